/* dropout row: inverted dropout with probability p (identity in eval mode);
 * the mask is kept from forward to backward. */
#include <stdio.h>

#include "../nn/net.h"

static int dropout_infer(Net *net, Layer *l, char *why, size_t n) {
  (void)net;
  if (!(l->a.p >= 0.0f && l->a.p < 1.0f)) return snprintf(why, n, "p %g not in [0,1)", l->a.p), 1;
  return 0;
}

static size_t dropout_saved(const Layer *l, int B) { return shape_numel(l->out_shape) * B; }

static void dropout_fwd(const LayerCall *c) {
  const BatchShare *share = c->mode == MODE_TRAIN ? c->net->share : NULL;
  dropout_forward(c->l->out, c->l->saved, call_in(c, 0), shape_numel(c->l->out_shape) * c->B, c->B,
                  share ? share->first_row : 0, share && share->row_stride ? share->row_stride : 1,
                  c->l->a.p, c->mode, &c->net->rng);
}

static void dropout_bwd(const LayerCall *c) {
  float *d = call_din(c, 0);
  if (d)
    dropout_backward(d, c->acc[0], c->l->dout, c->l->saved, shape_numel(c->l->out_shape) * c->B,
                     c->mode);
}

const OpDef op_dropout = {
    .name = "dropout",
    .min_inputs = 1,
    .max_inputs = 1,
    .attrs = ATTR_P,
    .channels_last = 1,
    .infer = dropout_infer,
    .saved_floats = dropout_saved,
    .forward = dropout_fwd,
    .backward = dropout_bwd,
};
