/* partition.h — assigning a model's layers to P contiguous stages. */
#ifndef PT_PARTITION_H
#define PT_PARTITION_H

#include "config.h"
#include "layers.h"
#include "pt_status.h"

/* Fills first[0..P] with cut points: stage s holds layers [first[s],
 * first[s+1]), first[0] = 0, first[P] = n_layers, every stage non-empty.
 *  UNIFORM: layer counts differ by at most one (earlier stages get more).
 *  PARAMS:  contiguous split minimising the largest stage parameter count.
 *  COST:    the same for forward+backward FLOPs from the registry.
 *  MEASURED: refused here (it needs times: partition_layers_weighted).
 *  EXPLICIT: spec "a-b,c-d,..." of inclusive global layer ranges in order,
 *   which must cover 0..n_layers−1 without gap or overlap and give P ranges.
 * More stages than layers, gaps, overlaps and a wrong range count are refused
 * with a message naming pipeline.partition and what was expected. */
pt_status partition_layers(const model *m, int P, partition_kind kind, const char *spec, int *first);

/* Fills first[0..P] like partition_layers with COST, from the given
 * per-layer weights (weights[n_layers], e.g. measured seconds of forward +
 * backward: pipeline.partition = measured) instead of FLOPs. Not collective.
 * Errors: PT_ERR_INVALID (more stages than layers, a negative or non-finite
 * weight), PT_ERR_NOMEM. */
pt_status partition_layers_weighted(const model *m, int P, const double *weights, int *first);

/* The stage that holds global layer `layer` under the cut points cuts[0..P]
 * of partition_layers: the s with cuts[s] <= layer < cuts[s+1] (0 for a
 * layer before the first cut, P − 1 for one past the last). cuts may be NULL
 * when P = 1. Not collective; no errors. */
int partition_stage_of(const int *cuts, int P, int layer);

/* "uniform", "params", "cost" or "explicit". */
const char *partition_kind_name(partition_kind k);

#endif
