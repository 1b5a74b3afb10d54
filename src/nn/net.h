/* The network: a list of layers over numbered tensors (tensor 0 is the
 * normalised input, tensor i+1 the output of layer i), a parameter arena in
 * PyTorch state_dict order, and a plan of every buffer for one batch size.
 * What each op kind does lives in its row of the op table (src/ops/, one
 * file per op, listed in OP_KINDS in include/medrobust.h); the net's loops, planner and initialiser
 * ask the table and never name a kind. Builders in src/models/ describe a
 * net with the net_add_* calls below. */
#ifndef MR_NET_H
#define MR_NET_H

#include "../layers/layers.h"
#include "medrobust.h"

#define NAME_LEN 96
#define SHAPE_MAX_DIMS 4 /* per image: C, or C,H,W, or C,D,H,W */

/* A tensor's shape per image, channels first. */
typedef struct {
  int ndim;
  int d[SHAPE_MAX_DIMS];
} Shape;

static inline size_t shape_numel(Shape s) {
  size_t n = 1;
  for (int i = 0; i < s.ndim; i++) n *= (size_t)s.d[i];
  return n;
}
static inline int shape_c(Shape s) { return s.d[0]; }
static inline int shape_h(Shape s) { return s.ndim >= 3 ? s.d[s.ndim - 2] : 1; }
static inline int shape_w(Shape s) { return s.ndim >= 2 ? s.d[s.ndim - 1] : 1; }
static inline Shape shape_chw(int c, int h, int w) {
  Shape s = {3, {c, h, w, 0}};
  return s;
}
static inline Shape shape_flat(int c) {
  Shape s = {1, {c, 0, 0, 0}};
  return s;
}

enum {
  ATTR_OUT_CHANNELS = 1u << 0,
  ATTR_GROUPS = 1u << 1,
  ATTR_BIAS = 1u << 2,
  ATTR_KERNEL = 1u << 3,
  ATTR_STRIDE = 1u << 4,
  ATTR_PAD = 1u << 5,
  ATTR_DILATION = 1u << 6,
  ATTR_OUTPUT_PADDING = 1u << 7,
  ATTR_SCALE = 1u << 8,
  ATTR_MODE = 1u << 9,
  ATTR_P = 1u << 10,
  ATTR_EPS = 1u << 11,
  ATTR_MOMENTUM = 1u << 12,
  ATTR_LO = 1u << 13,
  ATTR_HI = 1u << 14,
  ATTR_VALUE = 1u << 15,
};

/* Parameter slots a layer may own, resolved to pointers after planning. */
typedef enum {
  SLOT_WEIGHT,
  SLOT_BIAS,
  SLOT_RUNNING_MEAN,
  SLOT_RUNNING_VAR,
  SLOT_COUNTER,
  SLOT_COUNT
} ParamSlot;

typedef struct {
  OpKind kind;
  char name[NAME_LEN]; /* PyTorch module path, "" for parameter-free layers */
  int n_src;
  int src[NET_MAX_INPUTS];   /* input tensor ids */
  Shape in_shape, out_shape; /* per image: of input 0 and of the output */
  OpAttrs a;
  double flops;        /* forward, per image */
  double flops_inside; /* of them, those not on padding (0: all) */
  size_t n_params;     /* trainable floats it owns */
  int readers;         /* layer inputs reading its output (set by net_finish) */
  /* planner passes (never change what a tensor id means to the builder) */
  int fused_relu; /* this layer applies the ReLU that reads it (batchnorm, add) */
  int alias;      /* a ReLU fused into its producer: shares the producer's buffers */
  int overwrites; /* 1 + k: the output is written over input k's buffer (its gradient is its
                     own); 0: a buffer of its own */
  /* 1 + the 2x2 max-pool layer that this layer's fused ReLU feeds, which its own kernels do
   * too when channels-last (net_fuse_pools): the full-size map is never written */
  int pool_fused;
  /* a concatenation whose readers, batchnorms (or concatenations like it), read its inputs
   * where they are in inference when channels-last (net_gather_concats): never stored */
  int gathered;
  /* parameters: arena offsets, then pointers */
  unsigned slots;
  size_t slot_off[SLOT_COUNT];
  float *weight, *bias, *dweight, *dbias;
  float *running_mean, *running_var;
  int64_t *num_batches_tracked;
  /* planned per batch */
  float *out, *dout; /* (B, out) */
  float *saved;      /* kept from forward to backward (argmax, mask, batch statistics) */
  ConvDnnl *dnnl;    /* oneDNN primitives for the current batch size, or NULL */
} Layer;

typedef enum { ENTRY_PARAM, ENTRY_STAT, ENTRY_COUNTER } EntryKind;

#define ENTRY_MAX_DIMS 5
typedef struct {
  char name[NAME_LEN];
  EntryKind kind;
  size_t offset, numel;
  int ndim;
  int64_t shape[ENTRY_MAX_DIMS];
} Entry;

/* What the convolution backend built for one batch size. net_predict runs a net with small
 * weights a few images at a time (net_inference_chunk) on a second one, so that alternating
 * predictions with attack steps on the full batch rebuilds nothing. */
typedef struct {
  int batch; /* the batch the primitives are for; 0: none */
  /* every 4-D activation (not the input) is NHWC, decided when the primitives are built (every
   * op has NHWC kernels, every convolution got a oneDNN primitive) */
  int channels_last;
  ConvDnnl **layer_dnnl; /* parked: the layers' primitives; in use: NULL (they are in Layer) */
  void *conv_ws[CONV_WS_COUNT];
  size_t conv_ws_bytes[CONV_WS_COUNT];
  float *fold_weight, *fold_bias; /* inference: batchnorm folded into a conv */
} NetEngine;

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
  double *profile;             /* net_profile_start: per layer, forward then backward seconds */
  double flops;
  MrError build_err; /* the first builder error, sticky; net_finish reports it */
  int finished;
  /* plan */
  int batch, planned_threads, batch_in_use;
  NetPlanMemory plan_memory; /* of the last net_plan */
  float *act;                /* all activations and their gradients */
  float *input, *dinput;     /* normalised input (B,C,H,W) and its gradient */
  float *scratch;            /* shared by the layers, which run one at a time */
  float *probs, *dlogits;
  float *logits; /* NCHW output when the last tensor is channels-last with H*W > 1 */
  Mode last_mode;
  int input_levels;        /* > 0: pixels quantised before the net (masks input gradients) */
  Rng rng;                 /* dropout */
  const BatchShare *share; /* data-parallel training (net_set_batch_share); NULL: alone */
  /* bumped whenever the parameters or batchnorm statistics may have changed (a mutable
   * pointer handed out, a training forward): inference's folded weights are redone then */
  uint64_t param_version;
  /* convolution backend: oneDNN primitives are rebuilt when the batch changes */
  int use_dnnl, allow_channels_last;
  NetEngine engine; /* in use; its per-layer primitives are the layers' dnnl */
  NetEngine parked; /* the other batch's (net_predict's chunks, or the full batch's) */
  /* forward-only plan: outputs share a few buffers (net_predict) */
  float *infer_arena;
  float **infer_out;
  int infer_batch;
  float *few_scratch; /* inference: conv2d_few's padded input */
  size_t few_scratch_floats;
  /* a layer above the net (the attacks' workspace) keeps its per-net state
   * here; net_free calls aux_free on it */
  void *aux;
  void (*aux_free)(void *);
};

/* ---- the op table ------------------------------------------------------- */

/* One layer's call from the forward or backward loop. */
typedef struct {
  Net *net;
  Layer *l;
  int B;
  Mode mode;
  int param_grads;                    /* accumulate parameter gradients */
  unsigned char want[NET_MAX_INPUTS]; /* input k's gradient is needed */
  unsigned char acc[NET_MAX_INPUTS];  /* accumulate into input k's gradient, else overwrite */
  int channels_last;                  /* 4-D tensors are (B,H,W,C) */
  int forward_only;                   /* no backward follows: nothing need be saved for it */
} LayerCall;

typedef struct {
  const char *name; /* in model files and listings */
  int min_inputs, max_inputs;
  unsigned attrs;    /* ATTR_* bits it reads */
  int channels_last; /* has (B,H,W,C) kernels; a net with an op without them stays planar */
  int fuses_relu;    /* can apply a following ReLU in its own pass */
  /* backward never reads this op's output (but for the mask of a fused ReLU): once its one
   * reader has run, the buffer may be overwritten (net_overwrite_inputs) */
  int backward_skips_output;
  /* forward may write its output over an input, and backward reads no input */
  int may_overwrite_input;
  /* Checks the inputs and attributes, sets l->out_shape and l->flops and
   * registers the parameters (net_param). Returns 0, or 1 with why filled.
   * NULL: the output has input 0's shape and the op has no parameters. */
  int (*infer)(Net *net, Layer *l, char *why, size_t n);
  void (*init)(Layer *l, Rng *rng);                             /* NULL: no parameters */
  size_t (*saved_floats)(const Layer *l, int B);                /* NULL: none */
  size_t (*scratch_floats)(const Layer *l, int B, int threads); /* NULL: none */
  /* oneDNN primitives for a batch (channels_last or planar); returns 0 when
   * oneDNN refuses, so the net falls back. NULL: the op has none. */
  int (*prepare)(Net *net, Layer *l, int B, int channels_last);
  void (*forward)(const LayerCall *c);
  void (*backward)(const LayerCall *c);
} OpDef;

const OpDef *op_def(OpKind kind);
/* by name; -1 if unknown */
int op_parse(const char *name);

/* ---- helpers for op files ---------------------------------------------- */

float *net_tensor_out(Net *net, int t);
float *net_tensor_dout(Net *net, int t);
/* input k's buffers in a call; dout NULL when its gradient is not wanted */
static inline float *call_in(const LayerCall *c, int k) {
  return net_tensor_out(c->net, c->l->src[k]);
}
static inline float *call_din(const LayerCall *c, int k) {
  return c->want[k] ? net_tensor_dout(c->net, c->l->src[k]) : NULL;
}
/* He-normal weights with std sqrt(2 / fan_out), zero bias. */
void op_init_he(Layer *l, Rng *rng, int fan_out, size_t n_weight, int n_bias);
/* Registers a parameter (PyTorch name prefix.suffix) in a slot of l. */
void net_param(Net *net, Layer *l, ParamSlot slot, const char *suffix, int ndim,
               const int64_t *shape);
/* Convolution geometry of a conv-like layer for batch B, from its input
 * shape and attributes (stride, dilation defaults applied). */
Conv2dDims layer_conv_dims(const Layer *l, int B);
/* The same geometry between any two shapes (a transposed conv's mirror
 * convolution runs from its output to its input). */
Conv2dDims conv_dims_between(const Layer *l, Shape in, Shape out, int B);
/* Conv-like layers: a (C,H,W) input and channels that split into the
 * groups; returns 1 with why filled otherwise. */
int conv_channels_invalid(const Layer *l, char *why, size_t n);
PoolDims layer_pool_dims(const Layer *l, int B);

/* The loss of the last forward's output (B,K) or (B,K,H,W) against one class
 * per image or per pixel; writes d(loss)/d(logits) into dlogits. per_sample:
 * the sum of each image's own loss (attacks), else the batch mean (training). */
float net_loss(Net *net, const float *logits, const int *y, const float *class_weights, int batch,
               int per_sample, float *dlogits);

/* ---- building (the calls are public: include/medrobust.h) ----------------- */

Shape net_tensor_shape(const Net *net, int t);

/* ---- the graph in model files (graph.c) ----------------------------------- */

/* The op list as JSON (malloc'ed; NULL when out of memory). */
char *graph_to_json(const Net *net);
/* Appends the ops of a graph JSON to a net; errors name `where` and the op. */
Status graph_build_from_json(Net *net, const char *json, const char *where, MrError *err);
/* A finished (uninitialised) net from a spec and its graph. */
Net *net_from_graph(const ModelSpec *spec, const char *graph_json, const char *where, MrError *err);

#endif
