/* layout.h — a config on a grid of P pipeline stages × D replicas: what
 * every rank (and the simulator) derives alike from the config and the grid
 * shape, before any stage holds memory. */
#ifndef PT_LAYOUT_H
#define PT_LAYOUT_H

#include "config.h"
#include "dataset.h"
#include "layers.h"
#include "pt_status.h"
#include "schedule.h"

typedef struct {
    model m;
    dataset data;       /* opened: its shape (features, classes, targets) shapes the model */
    int P, D;           /* stages per replica, replicas */
    int chunks;         /* model chunks per rank: chunk c of rank r is virtual stage c·P + r */
    int M_local;        /* micro-batches of each replica per step: M / D */
    int *cuts;          /* chunks·P + 1 cut points: virtual stage vs holds layers [cuts[vs], cuts[vs+1]) */
    schedule train_sc;  /* the lowered, validated training lists of one replica */
    schedule eval_sc;   /* and the forward-only ones */
    double *layer_seconds; /* pipeline.partition = measured: each layer's forward + backward from the profile */
} layout;

/* Opens the data set, builds the model, partitions it into chunks·P virtual
 * stages and builds, lowers and validates the training and evaluation
 * schedules of one replica (M / D micro-batches; with D > 1 each chunk's
 * gradient buckets reduced by REDUCE_GRAD ops). Not collective: the same on
 * every rank, so every rank reaches the same verdict. max_micro_batches:
 * the most the transport's tags allow. Errors: PT_ERR_INVALID naming the
 * config keys and numbers (data set and model disagree, too many virtual
 * stages, M not divisible where the schedule needs it, a schedule that fails
 * validation), the data set's errors, PT_ERR_NOMEM. */
pt_status layout_build(layout *L, const config *c, int P, int D, int max_micro_batches);

/* layout_build in two parts: layout_open opens the data set and builds the
 * model (the model and data errors above; with pipeline.partition =
 * measured it reads pipeline.profile, with profile_read's errors); layout_grid (again for another
 * grid or config of the same model and data) partitions and builds the
 * schedules, replacing those of an earlier call. */
pt_status layout_open(layout *L, const config *c);
pt_status layout_grid(layout *L, const config *c, int P, int D, int max_micro_batches);

void layout_free(layout *L);

#endif
