/* The network: a flat list of layers over numbered tensors (tensor i is the
 * output of layer i, tensor -1 the normalised input), a parameter arena in
 * PyTorch state_dict order, and a plan of every buffer for one batch size.
 * Builders in src/models/ describe a net with the net_add_* calls below. */
#ifndef MR_NET_H
#define MR_NET_H

#include "../layers/layers.h"
#include "medrobust.h"

typedef enum {
  LAYER_CONV2D,
  LAYER_BATCHNORM2D,
  LAYER_RELU,
  LAYER_MAXPOOL,
  LAYER_AVGPOOL,
  LAYER_GLOBAL_AVGPOOL,
  LAYER_FLATTEN,
  LAYER_DENSE,
  LAYER_DROPOUT,
  LAYER_ADD,
  LAYER_SHORTCUT_PAD,
  LAYER_KIND_COUNT
} LayerKind;

#define NET_INPUT (-1)
#define NAME_LEN 96

typedef struct {
  LayerKind kind;
  char name[NAME_LEN]; /* PyTorch module path, "" for parameter-free layers */
  int src, src2;       /* input tensors; src2 only for add */
  int c, h, w;         /* input shape per image */
  int oc, oh, ow;      /* output shape per image */
  int k, stride, pad, groups, has_bias;
  int fused_relu; /* batchnorm/add: ReLU applied in the same pass */
  float p, eps, momentum;
  /* arena offsets (resolved to pointers by net_resolve) */
  size_t w_off, b_off, stat_off;
  int counter_idx;
  float *weight, *bias, *dweight, *dbias;
  float *running_mean, *running_var;
  int64_t *num_batches_tracked;
  /* planned per batch */
  float *out, *dout; /* (B, oc, oh, ow) */
  float *save_mean, *save_invstd;
  int32_t *argmax;
  float *mask;
  ConvDnnl *dnnl; /* oneDNN primitives for the current batch size, or NULL */
} Layer;

typedef enum { ENTRY_PARAM, ENTRY_STAT, ENTRY_COUNTER } EntryKind;

typedef struct {
  char name[NAME_LEN];
  EntryKind kind;
  size_t offset, numel;
  int ndim;
  int64_t shape[4];
} Entry;

struct Net {
  ModelSpec spec;
  Layer *layers;
  int n_layers, cap_layers;
  Entry *entries;
  int n_entries, cap_entries;
  size_t n_params, n_stats;
  int n_counters;
  float *params, *grads, *stats;
  int64_t *counters;
  unsigned char *grad_written; /* per tensor, during backward */
  double flops;
  /* plan */
  int batch, planned_threads, batch_in_use;
  float *act;            /* all activations and their gradients */
  float *input, *dinput; /* normalised input (B,C,H,W) and its gradient */
  float *scratch, *wpartial;
  int32_t *argmax_arena;
  float *probs, *dlogits;
  Mode last_mode;
  int input_levels; /* > 0: pixels quantised before the net (masks input gradients) */
  Rng rng;          /* dropout */
  /* convolution backend: oneDNN primitives are rebuilt when the batch changes.
   * channels_last: every 4-D activation (not the input) is NHWC, decided
   * when the primitives are built (all convolutions on oneDNN, not refused) */
  int use_dnnl, dnnl_batch, allow_channels_last, channels_last;
  void *bn_scratch; /* channels-last batchnorm partial sums */
  /* forward-only plan: outputs share a few buffers (net_predict) */
  float *infer_arena;
  float **infer_out;
  int infer_batch;
  void *conv_ws[CONV_WS_COUNT];
  float *fold_weight, *fold_bias; /* inference: batchnorm folded into a conv */
  size_t conv_ws_bytes[CONV_WS_COUNT];
};

/* Builder calls: each appends a layer reading tensor src and returns the
 * index of its output tensor, or -1 (with err set) on a shape problem.
 * net_add_relu right after a batchnorm or add fuses into it and returns the
 * same index: from then on that index means the activated tensor. */
int net_add_conv(Net *net, const char *name, int src, int oc, int k, int stride, int pad,
                 int groups, int bias, MrError *err);
int net_add_bn(Net *net, const char *name, int src);
int net_add_relu(Net *net, int src);
int net_add_maxpool(Net *net, int src, int k, int stride, int pad, MrError *err);
int net_add_avgpool(Net *net, int src, int k, int stride, int pad, MrError *err);
int net_add_global_avgpool(Net *net, int src);
int net_add_flatten(Net *net, int src);
int net_add_dense(Net *net, const char *name, int src, int out, MrError *err);
int net_add_dropout(Net *net, int src, float p);
int net_add_add(Net *net, int a, int b, MrError *err);
int net_add_shortcut_pad(Net *net, int src, int oc, int stride);

Net *net_new(const ModelSpec *spec);
/* Allocates the arenas after the last net_add_* call. */
Status net_finish(Net *net, MrError *err);
/* Output shape of tensor t (t = NET_INPUT for the input). */
void net_tensor_shape(const Net *net, int t, int *c, int *h, int *w);
int net_last(const Net *net);

#endif
