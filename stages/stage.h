/* stage.h — a stage: a contiguous slice [first, last) of a model's layers
 * with its parameters, gradients, optimizer moments and activation stash.
 *
 * Parameters, gradients and the two optimizer moments are one allocation
 * each, laid out alike (design contract 5): tensor k of the stage lives at
 * tensors[k].offset in all four. The stash holds, per in-flight micro-batch
 * ("slot"), the input of every layer plus what each layer saves for
 * backward. */
#ifndef PT_STAGE_H
#define PT_STAGE_H

#include <stddef.h>
#include <stdint.h>

#include "layers.h"
#include "optim.h"
#include "pt_status.h"

#define STAGE_TENSOR_NAME_MAX 80

typedef struct {
    char name[STAGE_TENSOR_NAME_MAX]; /* global name: "layers.7.w" */
    int layer;                        /* global layer index */
    int ndim;
    int shape[2];
    size_t offset; /* floats from the start of params/grads/m1/m2 */
    size_t numel;
    int decay;
    /* global ordinal (as model_tensors numbers them) of the tensor this one
     * is a tied copy of, -1 when none: the "w" of a tied "lmhead" names the
     * embed's "w". The copy starts equal to its source; whoever trains sums
     * the two gradients before the update so they stay equal, and keeps the
     * copy out of checkpoints and gradient norms. */
    int tied_to;
} stage_tensor;

typedef struct {
    const model *model;
    int first, last; /* global layers [first, last) */
    int rows;        /* rows (samples) per micro-batch */
    int slots;       /* micro-batches the stash can hold at once */
    int in_dim, out_dim;

    size_t n_params;
    float *params, *grads, *m1, *m2;
    int n_tensors;
    stage_tensor *tensors;
    size_t *layer_off; /* per local layer: offset of its first parameter */

    size_t slot_floats;
    float *stash;
    size_t *in_off, *saved_off; /* per local layer, within a slot */
    float *gbuf[2];             /* ping-pong buffers for inner gradients */
    float *scratch;             /* rows × the largest per-sample workspace of its layers */

    /* The B/W split (stage_split_backward_init; NULL / 0 until then): per
     * slot, what stage_backward_input keeps for stage_backward_weight. */
    size_t wslot_floats;
    float *wstash;
    size_t *wsave_off; /* per local layer: its wsaved() floats within a W slot */
    size_t *gout_off;  /* per local layer: the gradient of its output within a W
                          slot, STAGE_NO_GOUT when not kept (no parameters, or
                          the last layer, whose gradient is the caller's dout) */
} stage;

#define STAGE_NO_GOUT ((size_t)-1)

/* Builds the stage for layers [first, last) of m, with `rows` samples per
 * micro-batch and `slots` stash slots, and initialises its parameters from
 * (seed, global layer, parameter name): the same values whatever the split. */
pt_status stage_init(stage *s, const model *m, int first, int last, int rows, int slots,
                     uint64_t seed);
void stage_free(stage *s);

/* Where the input of the micro-batch held in `slot` goes (rows × in_dim). */
float *stage_input(stage *s, int slot);

/* Forward of the micro-batch in `slot`; writes rows × out_dim to out. */
void stage_forward(stage *s, int slot, float *out, uint64_t seed, uint32_t step,
                   uint32_t micro_batch, int training);

/* Backward of the micro-batch in `slot` from dout (rows × out_dim): gradients
 * accumulate into s->grads; din (rows × in_dim) is written unless NULL. */
void stage_backward(stage *s, int slot, const float *dout, float *din, uint64_t seed,
                    uint32_t step, uint32_t micro_batch);

/* ---- the B/W split of Zero Bubble schedules (ZB-H1; Qi et al., "Zero
 * Bubble Pipeline Parallelism", ICLR 2024): stage_backward as two calls per
 * micro-batch, stage_backward_input (B: the input gradient the previous
 * stage waits for) and stage_backward_weight (W: the parameter gradients,
 * which may run later, after B of other micro-batches). For every
 * micro-batch, B then W leaves din and s->grads bit for bit as
 * stage_backward would, as long as the W calls of a step run in micro-batch
 * order (gradients accumulate in micro-batch order, design contract 2).
 *
 * Between B and W of a micro-batch its slot stays busy: the W stash of the
 * slot holds what the layers' backward_input keeps (the registry's wsaved,
 * rows × wsaved(d) floats per layer) and the gradient of the output of every
 * layer with parameters but the last (rows × d->out floats each), and W also
 * reads the slot's forward stash (layer inputs and saved values). So a slot
 * is reused for the forward of another micro-batch only after W. */

/* Allocates the W stash: slots × wslot_floats floats (zeroed). Call once
 * after stage_init, before the first stage_backward_input; a second call
 * does nothing. Not collective. Errors: PT_ERR_NOMEM naming the stage's
 * layers and the size. */
pt_status stage_split_backward_init(stage *s);

/* B of the micro-batch in `slot` (the same arguments as stage_backward):
 * from dout (rows × out_dim floats, the loss gradient of the stage's
 * output), writes din (rows × in_dim floats, overwritten) unless NULL and
 * fills the slot's W stash; touches no gradient in s->grads. seed, step and
 * micro_batch key the dropout masks as in forward. Errors: PT_ERR_INVALID
 * when stage_split_backward_init has not been called or slot is not in
 * [0, slots). */
pt_status stage_backward_input(stage *s, int slot, const float *dout, float *din, uint64_t seed,
                               uint32_t step, uint32_t micro_batch);

/* W of the micro-batch in `slot`, after its stage_backward_input: the
 * parameter gradients accumulate (+=) into s->grads; no input gradient is
 * written. dout is the same rows × out_dim floats given to
 * stage_backward_input (the caller keeps them until W; the stage keeps the
 * inner gradients itself); seed, step and micro_batch as given to it.
 * Errors: as stage_backward_input. */
pt_status stage_backward_weight(stage *s, int slot, const float *dout, uint64_t seed,
                                uint32_t step, uint32_t micro_batch);

void stage_zero_grad(stage *s);

/* Adds each local layer's Σ grad² (in double, in tensor order) to
 * per_layer[global layer]; tied copies are skipped (their source counts). */
void stage_grad_sumsq(const stage *s, double *per_layer);

/* Multiplies every gradient by factor (clipping). */
void stage_scale_grads(stage *s, float factor);

/* One optimizer update of every tensor at 1-based step t. */
void stage_optim_step(stage *s, const optim_config *cfg, float lr, long t);

/* Index of a tensor by global name, -1 when the stage does not hold it. */
int stage_find_tensor(const stage *s, const char *name);

/* Bytes of the stash (the peak activation memory of the stage), the W
 * stash of the B/W split included once allocated. */
size_t stage_stash_bytes(const stage *s);

#endif
