/* medrobust: adversarial robustness of medical image classifiers, in C.
 *
 * This header is the whole public API of libmedrobust. A network is built by
 * name, planned for a batch size once, and then used through a handful of
 * calls. Pixels are float32 in [0,1], NCHW; normalisation lives inside the net
 * so attacks work on the [0,1] pixel scale.
 *
 *   MrError err = {0};
 *   ModelSpec spec = model_spec_default("resnet20", 1, 28, 28, 2);
 *   Net *net = model_build(&spec, 42, &err);
 *   if (!net) { fprintf(stderr, "%s\n", err.msg); return 1; }
 *   float loss = net_loss_and_input_grad(net, x, y, batch, dx); // dx: (B,C,H,W)
 *   net_predict(net, x, batch, probs);                           // probs: (B,K)
 *   safetensors_save_net(net, "model.safetensors", &err);
 *   net_free(net);
 *
 * Every function that can fail returns a Status (or NULL) and fills an MrError
 * with a message naming the file, what was expected and what was found.
 * Nothing in the library prints or exits.
 */
#ifndef MEDROBUST_H
#define MEDROBUST_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#ifdef __cplusplus
extern "C" {
#endif

/* The library's version; model files say which graph schema they use. */
#define MEDROBUST_VERSION "0.4.0"

/* ---- status ---------------------------------------------------------- */

typedef enum {
  STATUS_OK = 0,
  STATUS_ERR_NOMEM,
  STATUS_ERR_IO,
  STATUS_ERR_FORMAT,
  STATUS_ERR_SHAPE,
  STATUS_ERR_ARG,
  STATUS_ERR_NAN,
} Status;

const char *status_str(Status s);

#define MR_ERROR_LEN 512
typedef struct {
  Status status;
  char msg[MR_ERROR_LEN];
} MrError;

/* Records a formatted message in err (may be NULL) and returns status. */
Status mr_error_set(MrError *err, Status status, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* ---- random numbers (deterministic for a given seed) ----------------- */

typedef struct {
  uint64_t s[4];
} Rng;

void rng_seed(Rng *rng, uint64_t seed);
/* Item `stream`'s own generator under `seed` (an image's, by its index in its data set):
 * what an item draws does not depend on which other items share its batch or rank. */
void rng_seed_stream(Rng *rng, uint64_t seed, uint64_t stream);
uint64_t rng_next(Rng *rng);
float rng_uniform(Rng *rng);  /* [0,1) */
float rng_normal(Rng *rng);   /* N(0,1) */
int rng_int(Rng *rng, int n); /* [0,n) */

/* ---- small array helpers ---------------------------------------------- */

/* Index of the largest of v[0..n-1], the first on ties: the predicted class. */
int argmax(const float *v, int n);
/* qsort comparator for floats, ascending */
int float_compare(const void *a, const void *b);

/* ---- threads ---------------------------------------------------------- */

/* Sets the OpenMP thread count used by every kernel (<=0: all cores). BLAS
 * itself stays single-threaded: parallelism is over images, see src/core. */
void mr_set_threads(int n);
int mr_get_threads(void);

/* A buffer of `bytes` for activations and gradients: 64-byte aligned, and from 2 MiB on in
 * huge pages where the kernel grants them (src/core/arena.c). Freed with free(); NULL when out of
 * memory. */
void *mr_alloc_arena(size_t bytes);

/* ---- limits on untrusted files ---------------------------------------- */

/* What readers accept before they allocate: a file's declared sizes are
 * checked against these first. The defaults suit medical images and models;
 * a user with larger files raises them (medrobust --max-megapixels N
 * --max-file-gb N). */
typedef struct {
  uint64_t image_pixels; /* one decoded image, width x height (default 40 Mi) */
  uint64_t file_bytes;   /* one model file, or one .npz member inflated (default 16 GiB) */
  /* an .npz member over 256 MiB inflating more than this many times its stored size is a
   * decompression bomb (default 200; 0: no limit) */
  double inflate_ratio;
} MrLimits;
MrLimits mr_limits(void);
void mr_set_limits(MrLimits limits);

/* ---- several processes (MPI; src/core/dist.c) ---------------------------- */

/* Built with `make MPI=1`, medrobust runs alone or under mpirun / srun; built without,
 * these are the one-process answers. dist_init takes main's arguments. */
void dist_init(int *argc, char ***argv);
void dist_finalize(void);
int dist_rank(void); /* 0 .. dist_size() - 1 */
int dist_size(void);
/* Ends the job on every rank with this exit code: one rank's failure must not leave the
 * others waiting for it. */
void dist_abort(int exit_code);
void dist_barrier(void); /* every rank has come this far */
/* A work queue shared by the ranks (an atomic counter on rank 0): dist_queue_next returns
 * the next unclaimed index below n, claiming `chunk` at a time, then n. Creating and freeing
 * it are collective, but for a rank that `failed`: it frees only its own memory, since the
 * job is about to end (main's dist_abort) and the others may never get there. One process:
 * 0, 1, 2, ... */
typedef struct DistQueue DistQueue;
DistQueue *dist_queue_new(int n, int chunk);
int dist_queue_next(DistQueue *q);
void dist_queue_free(DistQueue *q, int failed);
/* Collective: rank 0's items[i] becomes the item of the rank with done[i] set, for every i;
 * the other ranks' items are left as they are. */
Status dist_gather(void *items, size_t item_size, int n, const unsigned char *done, MrError *err);
/* The same, then every rank gets rank 0's items: for work the next step needs everywhere. */
Status dist_share(void *items, size_t item_size, int n, const unsigned char *done, MrError *err);
/* Collective: v becomes the sum over the ranks of their v, added in rank order, the same bits
 * on every rank and in every run (for training, whose ranks must stay in step). */
void dist_sum_doubles(double *v, int n);
void dist_sum_floats(float *v, size_t n);

/* ---- resumable work: the journal of a long command (src/core/journal.c) -- */

/* An append-only file of finished units of work, each a key and its outputs
 * behind a checksum, so a killed run continues with --resume. Every function
 * takes a NULL journal as "not journaled": nothing is restored or kept. */
typedef struct Journal Journal;
typedef struct {
  void *data;
  size_t size;
} JournalPart; /* one piece of a unit's outputs, restored in place */
/* Opens path for a run whose settings and inputs the fingerprint text lists
 * (a line each). An existing journal is an error unless resume is set, and
 * then must hold the same fingerprint; a torn last record is cut off. */
Journal *journal_open(const char *path, const char *fingerprint, int resume, MrError *err);
/* 1 with the parts filled when the journal holds key with exactly their
 * total size; 0: compute the unit (and journal_record it). */
int journal_restore(Journal *j, const char *key, const JournalPart *parts, int n_parts);
/* Appends the finished unit and syncs it to disk before returning. */
Status journal_record(Journal *j, const char *key, const JournalPart *parts, int n_parts,
                      MrError *err);
long journal_restored(const Journal *j); /* units restored so far */
int journal_count(const Journal *j);     /* units it holds */
const char *journal_path(const Journal *j);
void journal_close(Journal *j); /* keeps the file, for a later --resume */
/* The outputs are written: closes and removes the journal. */
Status journal_finish(Journal *j, MrError *err);
/* CRC-32 (zlib's) of any number of bytes, continuing crc; for fingerprints. */
uint32_t journal_crc(uint32_t crc, const void *data, size_t size);

/* ---- networks ---------------------------------------------------------- */

/* MODE_TRAIN_FROZEN: batch statistics and dropout as in training, running
 * statistics untouched (crafting adversarial examples against the training
 * behaviour without letting the attack's passes move the model). */
typedef enum { MODE_EVAL = 0, MODE_TRAIN = 1, MODE_TRAIN_FROZEN = 2 } Mode;

/* The perturbation's norm (attacks, adversarial training). */
typedef enum { NORM_LINF = 0, NORM_L2 = 1 } Norm;

#define MR_MAX_CLASSES 1000
#define MR_ARCH_LEN 32
#define MR_TRAINING_LEN 1024
#define MR_DATA_LEN 512

/* The loss of a per-pixel (segmentation) output; classification outputs
 * always use softmax cross-entropy. */
typedef enum { SEG_LOSS_XENT = 0, SEG_LOSS_DICE = 1, SEG_LOSS_XENT_DICE = 2 } SegLoss;

/* What a model is: its family, input, classes and options. Stored in the
 * safetensors __metadata__ so a file rebuilds its own architecture. */
typedef struct {
  char arch[MR_ARCH_LEN]; /* a family (medrobust models) or, for a file that carries its
                             graph, any label */
  int in_c, in_h, in_w;
  int n_classes;
  float width;                       /* channel multiplier (all families), 1 = as published */
  int depth;                         /* cnn: conv blocks; unet/segnet/fc-densenet: levels */
  int base;                          /* cnn, unet, segnet: channels of the first block, doubling
                                        each level; fc-densenet: of the first conv */
  int kernel;                        /* cnn: conv kernel size */
  int pool;                          /* cnn: 0 none, 1 max 2x2/2, 2 avg 2x2/2, 3 max 3x3/2 pad 1 */
  float dropout;                     /* before the classifier; 0 = none */
  int growth;                        /* densenet, fc-densenet: channels each dense layer adds */
  int block_layers[4];               /* densenet: layers per dense block (0 ends the list);
                                        fc-densenet: [0] layers per block */
  int decoder_up;                    /* unet, segnet, fc-densenet: 0 transposed conv 2x2/2,
                                        1 bilinear upsampling */
  float norm_mean[3], norm_std[3];   /* applied inside the net: (x-mean)/std */
  SegLoss seg_loss;                  /* per-pixel outputs: the training and attack loss */
  int ignore_label;                  /* per-pixel targets with this label count nowhere; -1: none */
  char *class_names[MR_MAX_CLASSES]; /* optional, owned by the spec */
  char training[MR_TRAINING_LEN];    /* how the weights were made: a JSON object train
                                        writes (options, adversarial mix as counted); "" if unknown */
  char data[MR_DATA_LEN];            /* the data it was trained on and its split: a JSON object
                                        (data_record_json); "" if unknown */
  size_t max_floats;                 /* loading a file: the floats it holds; an architecture
                                        needing more parameters is refused before they are
                                        allocated (0: no bound) */
} ModelSpec;

typedef struct Net Net;

/* Fills a spec with the family's published defaults. Returns a spec with
 * arch[0]==0 if the name is unknown. */
ModelSpec model_spec_default(const char *arch, int in_c, int in_h, int in_w, int n_classes);
void model_spec_free(ModelSpec *spec);
/* Deep copy (class names included). */
void model_spec_copy(ModelSpec *dst, const ModelSpec *src);

/* Builds and initialises (He-normal convs and dense layers, BN gamma=1 beta=0). */
Net *model_build(const ModelSpec *spec, uint64_t seed, MrError *err);

/* ---- building a graph by hand ------------------------------------------ */

/* Any graph of these ops: tensor 0 is the (normalised) input and the i-th
 * layer added writes tensor i. One X(KIND, name) row per op; src/ops/op_<name>.c
 * defines it (docs/model-files.md lists each op's inputs and attributes).
 *
 *   Net *net = net_new(&spec);                         // spec: input, classes, normalisation
 *   int a = net_add_relu(net, net_add_bn(net, "bn", net_add_conv(net, "c", NET_INPUT, 16, 3, 1, 1,
 * 1, 0))); int u = net_add_conv_transpose(net, "up", net_add_maxpool(net, a, 2, 2, 0), 16, 2, 2, 0,
 * 1); net_add_conv(net, "head", net_add_concat(net, (int[]){a, u}, 2), spec.n_classes, 1, 1, 0, 1,
 * 1); if (net_finish(net, &err) != STATUS_OK) ...          // the first build error, if any
 *   net_init_params(net, seed);                          // then train, save, attack as any net */
#define OP_KINDS(X)                        \
  X(OP_CONV2D, conv2d)                     \
  X(OP_CONV_TRANSPOSE2D, conv_transpose2d) \
  X(OP_BATCHNORM2D, batchnorm2d)           \
  X(OP_RELU, relu)                         \
  X(OP_MAXPOOL, maxpool2d)                 \
  X(OP_AVGPOOL, avgpool2d)                 \
  X(OP_GLOBAL_AVGPOOL, global_avgpool)     \
  X(OP_FLATTEN, flatten)                   \
  X(OP_DENSE, dense)                       \
  X(OP_DROPOUT, dropout)                   \
  X(OP_ADD, add)                           \
  X(OP_SHORTCUT_PAD, shortcut_pad)         \
  X(OP_CONCAT, concat)                     \
  X(OP_UPSAMPLE, upsample)                 \
  X(OP_SIGMOID, sigmoid)                   \
  X(OP_CLIP, clip)                         \
  X(OP_MUL, mul)                           \
  X(OP_SUB, sub)                           \
  X(OP_DIV, div)                           \
  X(OP_LEAKY_RELU, leaky_relu)

typedef enum {
#define OP_ENUM(kind, sym) kind,
  OP_KINDS(OP_ENUM)
#undef OP_ENUM
      OP_KIND_COUNT
} OpKind;

#define NET_INPUT 0        /* the input is an ordinary tensor id */
#define NET_MAX_INPUTS 128 /* inputs of one layer (concat of a long dense block) */

typedef enum { UPSAMPLE_NEAREST = 0, UPSAMPLE_BILINEAR = 1 } UpsampleMode;

/* Every attribute any op reads (each op reads its own: docs/model-files.md).
 * Spatial pairs are (H, W); pad is top, bottom, left, right. */
typedef struct {
  int out_channels, groups, bias;
  int kernel[2], stride[2], pad[4], dilation[2], output_padding[2];
  int scale[2]; /* upsampling factor */
  int mode;     /* upsampling: UpsampleMode */
  float p;      /* dropout */
  float eps, momentum;
  float lo, hi; /* clip */
  float value;  /* elementwise op with a constant; leaky ReLU: the negative slope */
} OpAttrs;

/* groups 1, stride and dilation 1, scale 1, eps 1e-5, momentum 0.1, clip [0, 6] */
OpAttrs op_attrs_default(void);
/* An empty net for the spec's input, classes and normalisation. */
Net *net_new(const ModelSpec *spec);
/* Appends a layer reading tensors src[0..n_src) and returns its output
 * tensor id, or -1 after recording the problem in the net's sticky build
 * error (any later call then does nothing and returns -1). */
int net_add(Net *net, OpKind kind, const char *name, const int *src, int n_src, const OpAttrs *a);
/* The common ops with square geometry; name is the PyTorch module path of
 * layers with parameters. */
int net_add_conv(Net *net, const char *name, int src, int oc, int k, int stride, int pad,
                 int groups, int bias);
int net_add_conv_transpose(Net *net, const char *name, int src, int oc, int k, int stride, int pad,
                           int bias);
int net_add_bn(Net *net, const char *name, int src);
int net_add_relu(Net *net, int src);
int net_add_maxpool(Net *net, int src, int k, int stride, int pad);
int net_add_avgpool(Net *net, int src, int k, int stride, int pad);
int net_add_global_avgpool(Net *net, int src);
int net_add_flatten(Net *net, int src);
int net_add_dense(Net *net, const char *name, int src, int out);
int net_add_dropout(Net *net, int src, float p);
int net_add_add(Net *net, int a, int b);
int net_add_shortcut_pad(Net *net, int src, int oc, int stride);
int net_add_concat(Net *net, const int *srcs, int n);
int net_add_upsample(Net *net, int src, int scale, UpsampleMode mode);
/* Tensor t's shape per image into dims (channels first); returns its ndim
 * (1 flat, 3 for C,H,W), 0 if t does not exist. */
int net_tensor_dims(const Net *net, int t, int dims[4]);
/* id of the last layer's output tensor */
int net_last(const Net *net);
/* Plans the fusions and allocates the parameters after the last net_add;
 * returns the first build error, or a problem with the end (it must give
 * n_classes scores per image or per pixel). */
Status net_finish(Net *net, MrError *err);
/* He-normal convolutions, PyTorch-default linear layers, batchnorm gamma 1
 * beta 0 var 1: each op's init, in layer order from one seeded stream. */
void net_init_params(Net *net, uint64_t seed);

/* Table of the families, for listings. */
typedef struct {
  const char *name;
  const char *description;
} ModelFamilyInfo;
int model_family_count(void);
const ModelFamilyInfo *model_family_info(int i);

void net_free(Net *net);
const ModelSpec *net_spec(const Net *net);
/* The model's name for class k, or its number written into buf. */
const char *net_class_name(const Net *net, int k, char buf[16]);
/* Replaces the spec's training record (truncated to MR_TRAINING_LEN - 1). */
void net_set_training_info(Net *net, const char *json);
/* Replaces the normalisation the net applies to its [0,1] input, (x - mean) / std
 * per channel (importers fold a graph's own preprocessing into it). */
void net_set_normalization(Net *net, const float mean[3], const float std[3]);
/* Replaces the spec's record of its training data (data_record_json). */
void net_set_data_record(Net *net, const char *json);
size_t net_param_count(const Net *net); /* trainable floats */
double net_flops(const Net *net);       /* forward FLOPs per image (2 per MAC) */
int net_num_classes(const Net *net);
int net_input_size(const Net *net); /* C*H*W */
/* H*W of the output: 1 for a classifier (B,K), else a (B,K,H,W) score map
 * whose target is one class per pixel (B,H,W). */
int net_output_pixels(const Net *net);
/* STATUS_OK for a per-image classifier; an error naming the model for a
 * per-pixel one, which every dataset-level call (one label per image:
 * training on a DataSplits, prediction and metrics over a Dataset) refuses. */
Status net_require_per_image(const Net *net, MrError *err);

/* The graph, for listings: layer i (0-based) reads tensors `inputs` (0 is
 * the input, i+1 the output of layer i) and makes a tensor of out[0..ndim). */
typedef struct {
  const char *op, *name; /* op kind ("conv2d", ...) and PyTorch module path ("" if none) */
  int n_inputs;
  const int *inputs;
  int out_ndim, out[4];
  size_t params;       /* trainable floats */
  double flops;        /* forward, per image, every kernel tap counted (the usual count) */
  double flops_inside; /* of them, those whose input is inside the image, not padding */
} NetLayerInfo;
int net_layer_count(const Net *net);
NetLayerInfo net_layer_info(const Net *net, int i);
/* Per-layer wall time, to measure where a model's time goes (bench_engine --profile). After
 * net_profile_start (STATUS_OK, or out of memory), every forward and backward adds each
 * layer's seconds: seconds[i] forward, seconds[n_layers + i] backward, where the
 * normalisation of the input counts as neither. A layer run inside another (a ReLU fused into
 * the op before it; a batchnorm folded into its convolution by net_predict) counts in that
 * one. NULL before the start. */
Status net_profile_start(Net *net, MrError *err);
const double *net_profile_seconds(const Net *net);

/* Plans memory for a batch size (done implicitly by every call below; an
 * explicit call moves the allocation out of a timed loop). */
Status net_plan(Net *net, int batch, MrError *err);
/* Bytes the last plan holds for activations, gradients, saved state and scratch, and of that
 * the layer outputs' gradients (shared by liveness: a gradient lives from its last reader's
 * backward to its producer's); without sharing they would take `unshared_gradient_bytes`. */
typedef struct {
  size_t total_bytes, gradient_bytes, unshared_gradient_bytes;
} NetPlanMemory;
NetPlanMemory net_plan_memory(const Net *net);

/* Forward pass; returns the logits (B,K) or (B,K,H,W), valid until the next call. */
const float *net_forward(Net *net, const float *x, int batch, Mode mode);
/* Backward from a logit gradient (of the output's shape) through the last forward. Accumulates
 * parameter gradients when want_param_grads, writes d/dx into dx if non-NULL. */
void net_backward(Net *net, const float *dlogits, float *dx, int want_param_grads);

/* Convolution kernels: oneDNN (default) or im2col + OpenBLAS sgemm (also
 * chosen by the environment variable MEDROBUST_CONV=im2col). */
/* DNNL keeps activations channels-last (NHWC) between layers; DNNL_NCHW
 * reorders around every convolution instead (slower; kept as a check). */
typedef enum {
  CONV_BACKEND_DNNL = 0,
  CONV_BACKEND_IM2COL = 1,
  CONV_BACKEND_DNNL_NCHW = 2
} ConvBackend;
void net_set_conv_backend(Net *net, ConvBackend backend);

/* Softmax probabilities (B,K) or, per pixel, (B,K,H,W), eval mode. Forward only: its activations
 * share a few cache-friendly buffers, so net_backward cannot follow it. A net with small weights
 * runs a few images at a time (net_inference_chunk). */
void net_predict(Net *net, const float *x, int batch, float *probs);
/* The images net_predict runs at a time for a batch: the batch itself, or chunks of equal size
 * (the last may overlap the one before) that keep each layer's output in cache. It depends on the
 * net, the batch and the thread count, so predictions stay deterministic. */
int net_inference_chunk(const Net *net, int batch);

/* The call every attack uses: eval mode; returns the mean loss (cross-
 * entropy; per-pixel outputs: the spec's seg_loss) and writes dx =
 * d(loss_i)/d(x_i) for each image i (the per-image loss, so an image's
 * gradient does not depend on the batch it is in). y: one class per image,
 * or per pixel (B,H,W) when net_output_pixels > 1. */
float net_loss_and_input_grad(Net *net, const float *x, const int *y, int batch, float *dx);

/* One training forward/backward: returns the batch's mean (optionally
 * class-weighted) loss, accumulates parameter gradients of that mean; y as
 * for net_loss_and_input_grad. */
float net_train_step_grads(Net *net, const float *x, const int *y, int batch,
                           const float *class_weights);

/* Data-parallel training: several processes share each batch, each holding some of its
 * images. sum adds every process's n values into v in a fixed order (the same result on
 * every process); in MODE_TRAIN batchnorm calls it for the batch's statistics and the loss for
 * its normalisers, so a batch split across processes trains as the whole batch would (the
 * parameter gradients, each process's share of the batch's, are the caller's to add up).
 * This process's images are the batch's rows first_row, first_row + row_stride, ... (stride 0
 * means 1); dropout draws each row's mask from the row's own stream, and the process holding
 * row 0 first offers batchnorm its shift. The net keeps the pointer: the caller owns the
 * struct, may change the rows between steps and passes NULL when the batch is whole again. */
typedef struct {
  void (*sum)(double *v, int n, void *ctx);
  void *ctx;
  int first_row, row_stride;
} BatchShare;
void net_set_batch_share(Net *net, const BatchShare *share);

void net_zero_grad(Net *net);
/* The flat parameters, writable. Inference (net_predict) keeps each convolution's weights
 * folded with its batchnorm, in oneDNN's layout, from one call to the next, and redoes them
 * after every call of net_params or net_tensor (either may hand out a pointer to write
 * through) and every training forward: ask for the pointer again after writing through one
 * kept from before the last prediction. */
float *net_params(Net *net);
float *net_grads(Net *net);

/* Softmax cross-entropy. logits (B,K) -> returns loss; dlogits (nullable)
 * gets d(loss)/d(logits). weights (K) nullable: PyTorch's weighted mean. If
 * per_sample, the loss and gradient are those of the sum over the batch. */
float softmax_xent(float *dlogits, float *probs, const float *logits, const int *labels,
                   const float *weights, int batch, int k, int per_sample);

/* ---- optimisers: flat loops over the parameter arena ------------------- */

typedef enum { OPTIM_SGD = 0, OPTIM_ADAM = 1 } OptimKind;

typedef struct {
  OptimKind kind;
  float lr, momentum, weight_decay;
  int nesterov;
  float beta1, beta2, eps;
  long step;
  float *state1, *state2; /* momentum / Adam moments, sized to the arena */
  size_t n;
} Optimizer;

/* Keeps the hyper-parameters the caller set and gives those left 0 their defaults (SGD lr 0.1;
 * Adam lr 1e-3, betas 0.9/0.999, eps 1e-8): start from a zeroed Optimizer. */
Status optim_init(Optimizer *opt, OptimKind kind, size_t n_params, MrError *err);
void optim_step(Optimizer *opt, float *params, const float *grads);
void optim_free(Optimizer *opt);

/* ---- model files: safetensors with PyTorch state_dict names ------------ */

Status safetensors_save_net(const Net *net, const char *path, MrError *err);
/* Rebuilds the architecture from __metadata__ and loads every tensor,
 * checking names, shapes, dtypes, bounds and finiteness. */
Net *safetensors_load_net(const char *path, MrError *err);
/* Loads tensors into an existing net (same checks). */
Status safetensors_load_into(Net *net, const char *path, MrError *err);

/* Visits every tensor of the state_dict in registration order. */
typedef struct {
  const char *name;
  int ndim;
  int64_t shape[5];
  int is_int64;   /* num_batches_tracked */
  float *data;    /* float tensors */
  int64_t *idata; /* int64 tensors */
  size_t numel;
} TensorRef;
int net_tensor_count(const Net *net);
TensorRef net_tensor(const Net *net, int i);

/* Training checkpoints: the model's tensors plus extra tensors (optimiser
 * state, RNG states; names outside the model's) and string metadata given as
 * a NULL-terminated key, value, key, value... list. Loading fills the extras
 * (same names, shapes, dtypes) and strdup()s the requested metadata values. */
Status safetensors_save_checkpoint(const Net *net, const char *path, const TensorRef *extra,
                                   int n_extra, const char *const *meta_kv, MrError *err);
/* The requested __metadata__ values (strdup'ed; NULL where absent). */
Status safetensors_read_metadata(const char *path, const char *const *keys, char **values,
                                 MrError *err);
Status safetensors_load_checkpoint(Net *net, const char *path, TensorRef *extra, int n_extra,
                                   const char *const *meta_keys, char **meta_values, MrError *err);

/* ---- data: every image is float32 in [0,1], NCHW --------------------- */

/* An intensity window (src/data/window.c): modality units (HU for CT) to [0,1] pixels,
 * (v - (center - width / 2)) / width, clipped. width 0: none. */
typedef struct {
  double center, width;
} IntensityWindow;
/* "lung", "mediastinum", "bone", "brain", "abdomen" or "CENTER,WIDTH"; 0 if neither */
int window_parse(const char *text, IntensityWindow *out);
const char *window_presets(void); /* the preset names, for help texts */
float window_apply(const IntensityWindow *w, double value);
/* A volume read without a window: its own range, lowest to highest value, as [0,1]. */
IntensityWindow window_of_range(const float *values, size_t n);
void window_describe(const IntensityWindow *w, char *out, size_t n); /* "lung (center -600, ...)" */

typedef struct {
  int n, c, h, w;
  float *images;          /* (n, c, h, w) */
  int *labels;            /* (n); -1 for an image without a label */
  char **files;           /* (n) each image's path relative to the data root; NULL for array sets */
  char array[24];         /* array sets: the array the images come from ("test_images") */
  int array_offset;       /* array sets: the index of image 0 in that array */
  int bits;               /* stored bits per sample (one grey level = 1/(2^bits-1)); 0: floats */
  int *masks;             /* segmentation sets: (n, h, w) one class id per pixel; NULL otherwise */
  IntensityWindow window; /* DICOM/NIfTI through a window: its modality units (width 0: none) */
  int *volume;            /* (n) sets with DICOM/NIfTI volumes: the volume image i is a slice of (a
                             volume's slices are adjacent, in slice order); -1 a 2-D image; NULL: none */
  uint64_t *hashes;       /* (n) image folders and manifests: each image's file content hash (a
                             slice's: of its volume's files and its slice number); NULL: none */
} Dataset;
/* How a per-image output names image i: its file, else "test_images[17]". */
const char *dataset_image_id(const Dataset *d, int i, char *buf, size_t n);
/* Image i's hashed id, 16 hex digits: of its file's bytes (Dataset.hashes), else of its
 * pixels. Stable across renames and copies, and it names no patient, where a path of a PACS
 * export may. */
const char *dataset_image_hash(const Dataset *d, int i, char *buf, size_t n);

/* ---- volumes: a 2-D model's slice predictions per volume (src/eval/volumes.c) ----
 * A volume's prediction is the mean of its slices' class probabilities, and its class
 * their argmax: every slice has a say in proportion to its confidence, and a volume
 * is not decided by one slice's vote. */
/* The end of the run of images from i that are one volume's slices (i + 1 for a 2-D image,
 * or when d has no volumes). */
int dataset_volume_end(const Dataset *d, int i);
/* The name of the volume image i is a slice of: its path relative to the data root
 * (the slice's id without ":Z"). */
const char *dataset_volume_name(const Dataset *d, int i, char *buf, size_t n);
/* A volume's hashed id (16 hex digits): of its slices' ids, images [first, end). */
const char *dataset_volume_hash(const Dataset *d, int first, int end, char *buf, size_t n);
/* The argmax of the mean of probs' rows [first, end) (k classes each); the mean into
 * mean (k) unless NULL. */
int volume_mean_prediction(const float *probs, int k, int first, int end, double *mean);
/* Over d's volumes (2-D images left out): how many, how many are labelled, and how many
 * of those the mean prediction gets right. */
void volume_accuracy(const Dataset *d, const float *probs, int k, int *volumes, int *labelled,
                     int *right);

typedef enum { SPLIT_TRAIN = 0, SPLIT_VAL = 1, SPLIT_TEST = 2, SPLIT_COUNT = 3 } Split;
const char *split_name(Split s);
/* "train", "val" or "test"; -1 if none */
int split_parse(const char *name);

/* How images that are not square reach the model's square input. */
typedef enum {
  FIT_CROP = 0,    /* shorter side to the size, then the centre (torchvision Resize+CenterCrop) */
  FIT_PAD = 1,     /* longer side to the size, black borders */
  FIT_STRETCH = 2, /* both sides to the size (the aspect ratio is lost) */
  FIT_COUNT
} FitMode;
const char *fit_name(FitMode f);
int fit_parse(const char *name);

#define DEFAULT_SPLIT_SEED 1

typedef struct {
  Dataset split[SPLIT_COUNT];
  int n_classes;
  char *class_names[MR_MAX_CLASSES];
  char source[160]; /* what was read, for reports */
  /* where the split came from: the file's own (array sets), a seeded
   * stratified 70/10/20 shuffle, or a manifest / split file */
  enum { SPLIT_FIXED = 0, SPLIT_SEEDED = 1, SPLIT_LISTED = 2 } split_kind;
  uint64_t split_seed;
  int n_files;                      /* image folders and manifests: the images listed */
  uint64_t listing_hash;            /* of every image's relative path, label and bytes */
  uint64_t assignment_hash;         /* of the listing and each image's split */
  int bits;                         /* stored bits per sample (8, 16); 0 when stored as floats */
  int stored_c, stored_h, stored_w; /* array sets: the stored shape; 0 when it varies */
  FitMode fit;
  int unlabelled;            /* no labels at all: every image is in the test split, labels -1 */
  int segment;               /* a segmentation set: every split has masks, n_classes counts the
                                background; labels are 0 */
  int binary_masks;          /* its masks were stored 0/255 and read as 0/1 */
  int split_folders;         /* train/test from root/{train,val,test}/ folders (a seeded tenth of
                                train validates when there is no val/) */
  int skipped;               /* files that are not PNG/JPEG/DICOM/NIfTI images, skipped */
  IntensityWindow window;    /* what mapped DICOM/NIfTI modality units to [0,1] (width 0: none,
                                or each volume's own range when volumes is set) */
  int volumes;               /* DICOM/NIfTI entries read (each gives its axial slices) */
  int mask_slices;           /* volumes gave only the slices their mask touches */
  double spacing;            /* volumes' slices were resampled to this many mm per pixel */
  char *root;                /* image folders and manifests: the folder image paths are
                                relative to (NULL otherwise) */
  char skipped_example[160]; /* the first of them, relative to the root */
} DataSplits;

typedef struct {
  int size;               /* resize to size x size; 0 keeps the stored size (image folders: 64) */
  int channels;           /* 1 or 3; 0 keeps the stored channels */
  uint64_t seed;          /* image folders, manifests without a split column: the split seed */
  FitMode fit;            /* image folders: non-square images */
  const char *split_file; /* image folders: CSV path,split (relative to the root) */
  int n_classes;          /* segmentation sets: label ids must be below it; 0: 1 + the largest */
  IntensityWindow window; /* DICOM and NIfTI entries: modality units to [0,1]; width 0: each
                             volume's own range */
  int mask_slices;        /* volumes: only the slices where their mask has a voxel > 0 */
  double spacing;         /* volumes: each slice resampled in-plane to this many mm per pixel
                             before the fit (0: as stored) */
} DataOptions;

/* Reads a MedMNIST-style .npz, an image folder (root/CLASS/IMAGE, PNG or JPEG;
 * root/IMAGE without classes: unlabelled), a CSV manifest (path,label[,split][,mask],
 * paths relative to the CSV; with a mask column and no label column, a segmentation set), or
 * Fashion-MNIST's IDX files (a folder holding them, or "fashion-mnist" for Debian's
 * /usr/share/datasets/fashion-mnist). Segmentation sets (image + mask per image): a folder
 * root/{images,masks}/ID.png or root/{train,val,test}/{images,masks}/ID.png, a .npz with
 * {split}_images and {split}_masks, or a folder with img.npy (or images.npy) and lbl.npy (or
 * masks.npy). Masks are label ids, or 0/255 binary read as 0/1; resized with
 * nearest neighbour; an id >= DataOptions.n_classes is an error naming the file. */
DataSplits *data_load(const char *path, const DataOptions *opt, MrError *err);
void data_free(DataSplits *d);
/* Writes the MedMNIST layout: uint8 {train,val,test}_{images,labels}.npy,
 * deflated, plus class_names.json; atomically. */
Status data_save_npz(const DataSplits *d, const char *path, MrError *err);
/* Writes arbitrary arrays into a .npz, atomically at close. dtype 'f'
 * (float32), 'i' (int32) or 'u' (uint8); shape row-major. */
typedef struct NpzWriter NpzWriter;
NpzWriter *npz_writer_open(const char *path, MrError *err);
void npz_writer_add(NpzWriter *w, const char *name, char dtype, const int *shape, int ndim,
                    const void *data);
Status npz_writer_close(NpzWriter *w, MrError *err);
/* The built-in synthetic lesion phantom: n images (balanced benign/
 * malignant, split 70/10/20), size 28 or 64, seeded. */
DataSplits *phantom_generate(int size, int n, uint64_t seed, MrError *err);
/* The same phantom for segmentation: masks with background 0, benign lesion
 * 1, malignant lesion 2 (one or two lesions per image, of either kind). */
DataSplits *phantom_generate_segment(int size, int n, uint64_t seed, MrError *err);
/* Resamples in place (area average down, bilinear up). */
Status dataset_resize(Dataset *d, int h, int w, MrError *err);
/* 1 <-> 3 channels (luma / replicate). */
Status dataset_set_channels(Dataset *d, int c, MrError *err);

/* Writes s as one CSV field, quoted when it holds a comma, quote or line break. */
void csv_write_field(FILE *f, const char *s);

/* ---- volumes: 3-D images with their voxel size (NIfTI, src/data/nifti.c) -- */

typedef struct {
  int nx, ny, nz;    /* x fastest: voxel (x, y, z) is data[(z * ny + y) * nx + x] */
  double sx, sy, sz; /* voxel size in mm */
  float *data;       /* as stored, scaled by the file's slope and intercept */
  int frames;        /* a 4-D NIfTI file's 3-D volumes, stacked along z (nz = frames x its
                        slices); 0 or 1: one volume */
  int has_affine;    /* affine is known: */
  double affine[12]; /* voxel (x, y, z) to mm in RAS+ (rows of 4): NIfTI's sform, else its
                        qform; DICOM's position and orientation, LPS turned to RAS */
} Volume;
/* A DICOM image or series (src/data/dicom.cpp, through GDCM). */
typedef struct {
  Volume v;     /* nx columns, ny rows, nz frames or slices; in modality units (HU for CT) */
  int channels; /* 1, or 3 (RGB): then each slice holds 3 planes of ny x nx */
  int slices;   /* files assembled (1 for a single file, multi-frame or not) */
  double slope, intercept; /* Rescale Slope and Intercept applied (1 and 0 when absent) */
  double origin[3];        /* Image Position Patient of the first voxel, mm */
  double direction[9];     /* row, column and slice direction cosines */
  char modality[17], photometric[17], transfer_syntax[80];
} DicomVolume;
/* A DICOM file (single or multi-frame), or a folder holding one series: its files sorted
 * by Image Position Patient along the slice normal, one Series Instance UID, equal
 * spacing. Pixels masked to Bits Stored, sign-extended, rescaled to modality units;
 * MONOCHROME1 inverted (higher is brighter); YBR converted to RGB. */
Status dicom_read(const char *path, DicomVolume *out, MrError *err);
void dicom_volume_free(DicomVolume *d);

/* Attacked slices back into their volumes, in modality units (src/data/volumeout.c): each
 * volume with a slice among set's first n images is re-read from the data root, every
 * slice's perturbation (adv - clean) is mapped back through the fit (to the slice's own
 * grid) and the window (times its width), added to the stored values and written as
 * DIR/REL.nii.gz (float32, the source's voxel size and geometry, 4-D when it was; read back
 * and compared before it is renamed into place) or, for DICOM sources in VOLUME_DICOM, as
 * a derived series DIR/REL/ (swapped in whole). L-inf budgets hold voxel by voxel:
 * resampling averages, it never amplifies, and DICOM's integers round toward the source.
 * The report and reread come from the files as read back. Unless NULL, reread (n images)
 * gets each attacked slice as a model reads it from its written volume (windowed and
 * fitted): where the window clips, or the fit resamples, that differs from adv. */
typedef struct {
  int volumes;          /* written */
  double max_change;    /* the largest |change| of a voxel, in modality units */
  long changed, hidden; /* voxels changed, and those of them the window clips on both sides of
                           the change (a model reading the file back does not see it) */
} VolumeWriteReport;
typedef enum {
  VOLUME_NIFTI = 0, /* every volume as DIR/REL.nii.gz */
  VOLUME_DICOM = 1  /* DICOM sources as derived series DIR/REL/ (dicom_write_derived); NIfTI
                       sources as NIfTI */
} VolumeFormat;
Status volumes_write_perturbed(const DataSplits *d, const Dataset *set, int n, const float *adv,
                               const char *dir, VolumeFormat format, float *reread,
                               VolumeWriteReport *report, MrError *err);
/* dir (made or not) must lie outside d's root. */
Status volumes_check_out_dir(const DataSplits *d, const char *dir, MrError *err);

/* A derived DICOM series of the grey volume read from source (a DICOM file or series folder),
 * with values (in modality units, the reader's slice order) as its pixels, into out_dir
 * under the source files' names: every file re-read and its pixels replaced (stored values
 * move by the change in stored units, truncated toward zero, as 16-bit integers with the
 * source's Rescale Slope/Intercept), uncompressed little endian, a new Series Instance UID
 * and new SOP Instance UIDs, Image Type DERIVED\SECONDARY, description as the Series
 * Description. The source is never written. GDCM runs in a child process, as for reading. */
Status dicom_write_derived(const char *source, const Volume *values, const char *description,
                           const char *out_dir, MrError *err);

/* A NIfTI-1/2 file (.nii, .nii.gz, .hdr/.img) holding a 3-D scalar volume, or a 4-D one
 * whose volumes are stacked along z (Volume.frames). */
Status volume_read_nifti(const char *path, Volume *out, MrError *err);
void volume_free(Volume *v);
/* From the header alone: the axial slices volume_read_nifti would give (all frames'). */
Status volume_nifti_slices(const char *path, int *slices, MrError *err);

/* ---- radiomics: IBSI features of an image inside a region of interest ----- */

typedef enum {
  RAD_BIN_NONE,  /* the grey levels as stored (integers >= 1): IBSI's digital phantom */
  RAD_BIN_COUNT, /* fixed bin number */
  RAD_BIN_WIDTH  /* fixed bin size, from bin_min (NAN: the ROI's minimum) */
} RadiomicsBinning;
typedef struct {
  RadiomicsBinning binning;
  int bin_count;               /* RAD_BIN_COUNT; default 32 */
  double bin_width, bin_min;   /* RAD_BIN_WIDTH */
  double reseg_min, reseg_max; /* intensity re-segmentation range (NAN: none) */
  int ivh_bins;                /* intensity-volume histogram: 0 the texture's levels */
  unsigned families;           /* RAD_FAMILY_* bits to compute; 0: every family */
  double resample;             /* isotropic voxel size in mm to resample to first; 0: none */
} RadiomicsOptions;
/* in resampled to isotropic `spacing` (IBSI: grids centred on each other, trilinear; a
 * mask is thresholded at 0.5); one-slice images keep their slice. out->data is malloc'ed. */
Status radiomics_resample(const Volume *in, double spacing, int is_mask, Volume *out, MrError *err);
#define RAD_FAMILY_MORPHOLOGY 1u     /* morph_ */
#define RAD_FAMILY_INTENSITY 2u      /* loc_, stat_, ih_, ivh_ */
#define RAD_FAMILY_GLCM 4u           /* cm_ */
#define RAD_FAMILY_GLRLM 8u          /* rlm_ */
#define RAD_FAMILY_ZONES 16u         /* szm_, dzm_ */
#define RAD_FAMILY_NEIGHBOURHOOD 32u /* ngt_, ngl_ */
/* "morphology,intensity,glcm,glrlm,zones,neighbourhood" (any of them) or "all" (0) into
 * *out; 0 when a name is unknown. */
int radiomics_families_parse(const char *list, unsigned *out);
/* The family bit a feature tag belongs to (0: not a radiomics tag). */
unsigned radiomics_family_of(const char *tag);
RadiomicsOptions radiomics_options_default(void);

typedef struct {
  char family[64]; /* IBSI family with its aggregation: "Co-occurrence matrix (3D, merged)" */
  char name[64];   /* IBSI feature name: "Joint maximum" */
  char tag[48];    /* machine name: "cm_joint_max_3D_comb" */
  double value;
} RadiomicsFeature;
typedef struct {
  RadiomicsFeature *items;
  int n, cap;
} RadiomicsFeatures;
/* Every IBSI-1 feature of image inside mask (mask > 0.5; same grid): morphology, local
 * intensity, statistics, intensity and intensity-volume histograms, and the texture
 * matrices (GLCM, GLRLM in 2-D, 2.5-D and 3-D, averaged and merged; GLSZM, GLDZM, NGTDM,
 * NGLDM in 2-D, 2.5-D and 3-D). A 2-D image is a volume with nz = 1. */
Status radiomics_extract(const Volume *image, const Volume *mask, const RadiomicsOptions *o,
                         RadiomicsFeatures *out, MrError *err);
const RadiomicsFeature *radiomics_find(const RadiomicsFeatures *f, const char *tag);
void radiomics_features_free(RadiomicsFeatures *f);

/* A 2-D image of a data set and how its ROI and features are taken. */
typedef struct {
  RadiomicsOptions extraction;
  int roi_label;   /* the ROI: mask == roi_label, or mask > 0 for -1 */
  int whole_image; /* or the whole image (also when there is no mask) */
  double spacing;  /* pixel size in mm */
} RadiomicsSetup;
RadiomicsSetup radiomics_setup_default(void); /* mask > 0, 1 mm, 32 bins */
/* The features of one (c,h,w) image (several channels: their mean) in its (h,w) mask
 * (NULL: the whole image). STATUS_ERR_ARG naming the ROI when it is empty. */
Status radiomics_image_features(const float *image, int c, int h, int w, const int *mask,
                                const RadiomicsSetup *s, RadiomicsFeatures *out, MrError *err);
/* Pixels of an (h * w = plane) mask in the ROI s takes. */
size_t radiomics_roi_pixels(const int *mask, size_t plane, const RadiomicsSetup *s);

/* Radiomics models (src/radiomics/model.c): standardised, filtered features into a linear
 * classifier trained by LIBLINEAR. */
typedef enum {
  RAD_LOGISTIC_L2, /* "logistic-l2" */
  RAD_LOGISTIC_L1, /* "logistic-l1": also selects features */
  RAD_LINEAR_SVM,  /* "svm": L2-regularised hinge loss */
  RAD_CLASSIFIER_COUNT
} RadiomicsClassifier;
const char *radiomics_classifier_name(RadiomicsClassifier c);
int radiomics_classifier_parse(const char *name); /* -1 if unknown */
typedef struct {
  RadiomicsClassifier classifier;
  double c;               /* inverse regularisation strength (LIBLINEAR's C); default 1 */
  int max_features;       /* at most this many after the correlation filter; default 20 */
  double max_correlation; /* a feature this correlated with a better one is dropped; 0.9 */
} RadiomicsTrainOptions;
typedef struct {
  RadiomicsSetup setup; /* how an image's features are computed */
  int n_features;
  char (*tags)[48];     /* the selected features */
  double *mean, *scale; /* their training mean and standard deviation */
  RadiomicsClassifier classifier;
  int k;                  /* classes */
  double *weights, *bias; /* logit c = bias[c] + sum_s weights[c * n_features + s] * z_s */
  char **class_names;
  char training[MR_TRAINING_LEN];
} RadiomicsModel;
/* x: (n, n_features) features named by tags; y: classes 0..k-1. Fills the selection,
 * standardisation, classifier and weights; the caller sets extraction, ROI and names. */
Status radiomics_model_train(const double *x, const char *const *tags, int n_features, const int *y,
                             int n, int k, const RadiomicsTrainOptions *o, RadiomicsModel *m,
                             MrError *err);
/* One logit per class of an image's features. */
Status radiomics_model_logits(const RadiomicsModel *m, const RadiomicsFeatures *f, double *z,
                              MrError *err);
void radiomics_softmax(const double *z, int k, float *p);
Status radiomics_model_save(const RadiomicsModel *m, const char *path, MrError *err);

/* The white-box surrogate of the features (src/radiomics/surrogate.c): exact where the
 * features are smooth in the intensities, the grey-level bins softened into logistic steps
 * of `temperature` bins where a family counts levels (intensity and intensity-volume
 * histograms, GLCM). */
int radiomics_surrogate_supports(const char *tag); /* morph_, loc_, stat_, ih_, ivh_, cm_ */
/* STATUS_ERR_ARG naming the model's features (or settings) the surrogate cannot follow */
Status radiomics_surrogate_check(const RadiomicsModel *m, MrError *err);
/* d objective / d feature, for the n features tagged tags (the others: 0) */
typedef struct RadCotangents {
  int n;
  const char (*tags)[48];
  const double *values;
} RadCotangents;
/* The surrogate features of image in mask (the families o selects, no resampling); with
 * ct (d objective / d feature by tag), grad (voxels) = d objective / d image. */
Status radiomics_surrogate_extract(const Volume *image, const Volume *mask,
                                   const RadiomicsOptions *o, double temperature,
                                   const RadCotangents *ct, RadiomicsFeatures *out, double *grad,
                                   MrError *err);
/* The model's logits on the surrogate features of one (c,h,w) image; with dlogits, grad
 * (c,h,w) = d (sum_j dlogits[j] logit_j) / d image. */
Status radiomics_surrogate_logits(const RadiomicsModel *m, const float *image, int c, int h, int w,
                                  const int *mask, double temperature, const double *dlogits,
                                  double *logits, float *grad, MrError *err);

/* Attacks on a radiomics pipeline (image -> features in the fixed mask -> model),
 * query-only on the exact features (src/radiomics/attack.c). */
typedef enum {
  RAD_ATTACK_SQUARE,    /* query-only (Andriushchenko et al. 2020) */
  RAD_ATTACK_SPSA,      /* query-only gradient estimates (Uesato et al. 2018) */
  RAD_ATTACK_SURROGATE, /* white-box: PGD on the surrogate's gradient, re-scored exactly */
  RAD_ATTACK_COUNT
} RadiomicsAttackKind;
const char *radiomics_attack_name(RadiomicsAttackKind k);
int radiomics_attack_parse(const char *name); /* -1 if unknown */
typedef enum {
  RAD_REGION_ALL,        /* any pixel */
  RAD_REGION_ROI,        /* only inside the ROI: an edit of the lesion */
  RAD_REGION_BACKGROUND, /* only outside it: the lesion untouched */
  RAD_REGION_COUNT
} RadiomicsRegion;
const char *radiomics_region_name(RadiomicsRegion r);
int radiomics_region_parse(const char *name); /* -1 if unknown */
typedef struct {
  RadiomicsAttackKind kind;
  float eps;   /* on [0,1] pixels, in the norm below */
  int queries; /* budget per image (surrogate: steps, each one exact evaluation) */
  int samples; /* SPSA: probe pairs per step (default 8) */
  float delta; /* SPSA: probe size (default 0.01) */
  RadiomicsRegion region;
  int target; /* a class to force, or -1: any wrong answer */
  uint64_t seed;
  Norm norm;         /* NORM_L2: the surrogate attack only */
  float temperature; /* surrogate: the soft bins' edge width in bins (default 0.1) */
} RadiomicsAttackOptions;
RadiomicsAttackOptions radiomics_attack_options_default(void); /* Square, eps 0.03, 1000 queries */
typedef struct {
  int clean_pred, adv_pred, queries;
  double clean_margin, adv_margin; /* below 0: fooled (or the target reached) */
} RadiomicsAttackResult;
/* Attacks one (c,h,w) image of class label in its (h,w) mask (NULL: whole image) into adv. */
Status radiomics_attack(const RadiomicsModel *m, const float *image, int c, int h, int w,
                        const int *mask, int label, const RadiomicsAttackOptions *o, float *adv,
                        RadiomicsAttackResult *r, MrError *err);
/* The model's selected features of one image, z-scored, into z (n_features). */
Status radiomics_model_zscores(const RadiomicsModel *m, const float *image, int c, int h, int w,
                               const int *mask, double *z, MrError *err);
Status radiomics_model_load(const char *path, RadiomicsModel *m, MrError *err);
void radiomics_model_free(RadiomicsModel *m);

/* ---- provenance: which data a model was trained on, and its split ------- */

/* The model file's record of d (kind, split rule and seed, listing hashes,
 * bit depth, stored shape, fit, class names count) as a JSON object. */
void data_record_json(const DataSplits *d, char *out, size_t n);
/* What the commands that use a trained model check before any work. */
typedef struct {
  int split_seed_given; /* the user asked for this split seed: no reuse, no refusal */
  uint64_t split_seed;
  const char *split_file;
  int allow_mismatch; /* class names/count or stored shape may differ */
} DataCheck;
/* Loads path for net: the split the model recorded (its seed and fit), then
 * refuses, with both sides in the message, a listing that changed since
 * training, a split that differs, other class names or count, or array
 * data stored at another shape (another task) unless allowed. */
DataSplits *data_load_for_model(const char *path, const Net *net, const DataCheck *check,
                                char *warning, size_t warning_len, MrError *err);
/* The checks of data_load_for_model on data already loaded (compare: the
 * second and later models must have been trained on the same split). */
Status data_check_for_model(const DataSplits *d, const char *path, const Net *net,
                            const DataCheck *check, char *warning, size_t warning_len,
                            MrError *err);
/* STATUS_OK when the data's task is the model's (masks for a per-pixel model,
 * none for a per-image one), else an error saying which is which; path
 * names the data in it. */
Status data_require_task(const DataSplits *d, const Net *net, const char *path, MrError *err);
/* The stored grey-level step of d: 1/(2^bits - 1), or 0 when unknown. */
double data_grey_step(int bits);

/* ---- training ------------------------------------------------------------ */

typedef enum { SCHEDULE_CONSTANT = 0, SCHEDULE_STEP = 1, SCHEDULE_COSINE = 2 } Schedule;
typedef enum { BALANCE_NONE = 0, BALANCE_LOSS = 1, BALANCE_SAMPLE = 2 } Balance;
/* Adversarial training: Madry et al.'s PGD, or FGSM from a random start with
 * step 1.25 eps ("fast" adversarial training, Wong et al. 2020). */
typedef enum { ADV_NONE = 0, ADV_PGD = 1, ADV_FGSM_RS = 2 } AdvTraining;

typedef struct {
  int epochs, batch;
  OptimKind optim;
  float lr, momentum, weight_decay;
  Schedule schedule;
  int step_every;   /* step schedule: epochs between decays */
  float step_gamma; /* step schedule: factor */
  int augment;      /* random flips (both axes) and rotations within +-rotate_deg */
  float rotate_deg;
  float noise_sd;  /* > 0: Gaussian noise of this std on every training image's [0,1] pixels,
                      unclipped (randomized smoothing's training, Cohen et al. 2019) */
  Balance balance; /* class-weighted loss or class-balanced sampling */
  uint64_t seed;
  const char *out;        /* best-validation model file */
  const char *checkpoint; /* per-epoch state for --resume */
  int resume;
  int stop_after; /* stop (as if interrupted) after this many epochs in this run; 0 = never */
  /* adversarial training: in every batch a share adv_ratio of the images
   * (paper 001: half) is replaced by adversarial examples crafted on the fly
   * against the current weights, and the checkpoint kept is the one of best
   * validation accuracy under PGD at adv_eps */
  AdvTraining adv;
  Norm adv_norm;
  float adv_eps;
  int adv_steps;         /* PGD iterations */
  float adv_step;        /* 0: PGD 2.5 eps / steps, FGSM-RS 1.25 eps */
  float adv_ratio;       /* 0..1 */
  int adv_warmup;        /* epochs over which eps grows linearly from 0 to adv_eps */
  Mode adv_mode;         /* batchnorm while crafting: MODE_EVAL (running statistics, as the
                            deployed model) or MODE_TRAIN_FROZEN (this batch's statistics) */
  int val_attack_steps;  /* PGD iterations of the robust validation */
  const char *init_from; /* for the training record: the checkpoint fine-tuned from */
} TrainOptions;

TrainOptions train_options_default(void);

typedef struct {
  int epoch, epochs;    /* 1-based epoch in progress */
  int step, steps;      /* within the epoch */
  float loss, acc;      /* running means over the epoch */
  float val_acc;        /* after an epoch, else -1 */
  float val_robust_acc; /* adversarial training, after an epoch: under PGD at adv_eps; else -1 */
  float adv_eps;        /* adversarial training: eps of this step (warm-up) */
  double adv_ratio;     /* adversarial training: adversarial share of the images so far */
  int improved;         /* this epoch became the best */
  double elapsed;       /* seconds since this run started */
} TrainProgress;
typedef void (*TrainProgressFn)(const TrainProgress *p, void *ctx);

typedef struct {
  int best_epoch;
  float best_val_acc;
  float best_val_robust_acc; /* adversarial training: of the kept checkpoint, else -1 */
  long images, adv_images;   /* trained on so far, and how many of them adversarial */
  int epochs_done;           /* including those of the run resumed */
  int interrupted;           /* stopped by stop_after */
} TrainResult;

/* Trains net on data's train split, keeping the checkpoint with the best
 * validation accuracy in opt->out, writing opt->checkpoint after every epoch
 * and resuming from it when opt->resume. Deterministic for a given seed and
 * thread count. */
Status train_run(Net *net, const DataSplits *data, const TrainOptions *opt,
                 TrainProgressFn progress, void *ctx, TrainResult *result, MrError *err);

/* Random flips and rotation of one (c,h,w) image in place; scratch holds c*h*w floats. */
void augment_image(float *img, float *scratch, int c, int h, int w, float rotate_deg, Rng *rng);
/* The same for an image and its (h,w) label mask (nearest neighbour), with
 * one draw of flips and angle; mask_scratch holds h*w ints. */
void augment_image_mask(float *img, int *mask, float *scratch, int *mask_scratch, int c, int h,
                        int w, float rotate_deg, Rng *rng);

/* ---- evaluation ------------------------------------------------------------- */

typedef struct {
  int n, k;
  double accuracy, balanced_accuracy;
  int majority_class;    /* the most frequent true class: a constant classifier */
  double majority_share; /* answering it scores this accuracy (and 1/k balanced) */
  double auc;            /* ROC AUC, macro one-vs-rest (binary: of class 1) */
  double auc_per_class[MR_MAX_CLASSES];
  int *confusion; /* (k, k): row = true class, column = predicted */
} Metrics;

Status metrics_compute(Metrics *m, const float *probs, const int *labels, int n, int k,
                       MrError *err);
void metrics_free(Metrics *m);
/* Class c's sensitivity (recall) and specificity from a (k, k) confusion
 * matrix (rows true, columns predicted); -1 where undefined. */
void confusion_rates(const int *confusion, int k, int c, double *sensitivity, double *specificity);

/* Softmax probabilities of every image, in batches; probs (n, K). The data
 * must match the model's input (see data_match_model). */
Status net_predict_dataset(Net *net, const Dataset *d, int batch, float *probs, MrError *err);
/* Resizes / converts the channels of every split to the net's input. */
Status data_match_model(DataSplits *d, const Net *net, MrError *err);
Rng *net_rng(Net *net);
/* Rounds pixels to `levels` grey levels before the net (0: off), as a
 * deployed preprocessor might. Its exact input gradient is zero: the classic
 * gradient-masking trap, which the evaluation's self-checks must catch. */
void net_set_input_quantization(Net *net, int levels);
/* The penultimate features: what the final layer reads (after global
 * pooling / flattening), per image; of the last net_forward. */
int net_feature_dim(const Net *net);
const float *net_last_features(const Net *net);
/* The logits of the last net_forward (or training step). */
const float *net_forward_last_logits(const Net *net);

/* ---- segmentation metrics (per-pixel outputs) ------------------------------ */

/* Dice (2|A n B| / (|A| + |B|)) and IoU per class, pixel accuracy, and the
 * mean foreground Dice of label maps against the truth.
 * Empty-mask convention: a class absent from both an image's truth and its
 * prediction has no Dice or IoU in that image (NAN) and is left out of the
 * image's mean; an image where no foreground class appears in either scores
 * 1 (nothing to find, nothing found). The set's score, paper 002's "average
 * Dice overlap across structures", is the mean over images of each image's
 * mean foreground Dice; class_dice pools every image's pixels per class. */
typedef struct {
  int n, k;
  double *dice, *iou;         /* (n, k) per image and class; NAN where undefined */
  double *image_dice;         /* (n) mean over the foreground classes defined there */
  double *image_iou;          /* (n) likewise */
  double *image_pixel_acc;    /* (n) */
  double *class_dice;         /* (k) pooled over the set; NAN for a class never seen */
  double *class_iou;          /* (k) */
  double mean_dice, mean_iou; /* means over images of image_dice / image_iou */
  double pixel_accuracy;      /* over every pixel of the set */
} SegMetrics;

Status seg_metrics_compute(SegMetrics *m, const int *pred, const int *truth, int n, int pixels,
                           int k, MrError *err);
void seg_metrics_free(SegMetrics *m);
/* One image's mean foreground Dice of pred against truth (the convention above). */
double seg_image_dice(const int *pred, const int *truth, int pixels, int k);
/* The highest-scoring class (the first on ties) of every image of (B,K)
 * scores or every pixel of (B,K,H,W) ones (pixels = H*W): out (B, pixels). */
void scores_argmax(const float *z, int batch, int k, int pixels, int *out);
/* The class of every pixel (argmax of the scores), eval mode: pred (B,H,W). */
void net_segment(Net *net, const float *x, int batch, int *pred);
/* net_segment over a whole set in batches: pred (n,H,W). */
Status net_segment_dataset(Net *net, const Dataset *d, int batch, int *pred, MrError *err);

/* ---- attacks: all through net_forward / net_backward, pixels kept in [0,1] -- */

typedef enum {
  ATTACK_FGSM,
  ATTACK_BIM,
  ATTACK_PGD,
  ATTACK_MIFGSM,
  ATTACK_DEEPFOOL,
  ATTACK_CW,
  ATTACK_SQUARE,
  ATTACK_APGD_CE,
  ATTACK_APGD_MARGIN, /* APGD with the DLR loss (3+ classes) or the C&W margin (2) */
  ATTACK_STANDARD,    /* the suite: worst case of APGD-CE, APGD-DLR/margin, Square */
  ATTACK_JSMA,        /* saliency map; eps = the fraction of features it may change */
  ATTACK_DAG,         /* Dense Adversary Generation (segmentation, toward a target mask) */
  ATTACK_FMN,         /* fast minimum-norm (Pintor et al. 2021): the smallest eps, in one run */
  ATTACK_COUNT
} AttackKind;

/* TARGET_MASK: per-pixel outputs only, one target class per pixel
 * (AttackOptions.target_mask; DAG's target types A/B/C are made by dag_target). */
typedef enum {
  TARGET_NONE = 0,
  TARGET_CLASS = 1,
  TARGET_LEAST_LIKELY = 2,
  TARGET_MASK = 3
} TargetMode;

typedef struct {
  AttackKind kind;
  Norm norm;
  float eps;             /* on the [0,1] pixel scale; unbounded attacks ignore it */
  const float *eps_each; /* optional: one eps per image of the batch (triage) */
  const int *index;      /* optional: each image's index in its data set, whose random stream
                            it draws from (rng_seed_stream); NULL: index_base + its row */
  int index_base;        /* the data set index of the batch's first image */
  float step;            /* 0: the attack's default */
  float step_rel;        /* > 0: step = step_rel * eps (paper 004: 0.1 with 20 iterations) */
  int iters, restarts;
  TargetMode target;
  int target_class;
  float momentum;  /* MI-FGSM decay */
  float overshoot; /* DeepFool */
  float cw_c, cw_lr, cw_kappa;
  int cw_search_steps;
  int queries;  /* Square */
  float p_init; /* Square */
  uint64_t seed;
  Mode mode;        /* the net's mode while attacking: MODE_EVAL, or MODE_TRAIN_FROZEN (training) */
  int last_iterate; /* PGD/BIM: return the final iterate (Madry et al.'s training examples) */
  const int *target_mask; /* TARGET_MASK: (B,H,W) the class each pixel should take */
  float gamma;            /* DAG: the L-inf size of each step on [0,1] pixels */
  float threshold;        /* DAG: stop once this share of the pixels shows the target */
} AttackOptions;
/* o for the batch that starts at image `first` of its data set (its random streams); o's
 * index_base is the data set's first image's index (a slice of a larger set). */
static inline AttackOptions attack_at(const AttackOptions *o, int first) {
  AttackOptions a = *o;
  a.index_base = o->index_base + first;
  return a;
}

AttackOptions attack_options_default(AttackKind kind);
const char *attack_name(AttackKind kind);
/* "pgd", "fgsm", ...; -1 if unknown */
int attack_parse(const char *name);
/* 1 if the attack keeps the perturbation inside an eps ball */
int attack_is_bounded(AttackKind kind);
/* What an attack supports; attack_run refuses any other combination with a
 * clear error instead of ignoring an option. */
#define ATTACK_SUPPORTS_TARGETED 1u
#define ATTACK_SUPPORTS_LINF 2u
#define ATTACK_SUPPORTS_L2 4u
#define ATTACK_SUPPORTS_PER_PIXEL 8u  /* segmentation outputs */
#define ATTACK_SUPPORTS_PER_IMAGE 16u /* classifiers */
unsigned attack_supports(AttackKind kind);
/* Crafts x_adv (B,C,H,W) for images x with labels y. Eval mode throughout. */
Status attack_run(Net *net, const AttackOptions *o, const float *x, const int *y, int batch,
                  float *x_adv, MrError *err);

/* Query-only attacks on any scorer (the Square attack on a net is one user; radiomics
 * pipelines another). A MarginFn gives each of n (c,h,w) images its margin: z_y -
 * max_{j != y} z_j, or max_{j != t} z_j - z_t when targeted; below 0 the image is fooled. */
typedef Status (*MarginFn)(void *ctx, const float *x, int n, float *margin, MrError *err);
typedef struct {
  int batch, c, h, w;
  const float *eps;             /* per image, L-inf */
  const unsigned char *allowed; /* (batch, h, w): pixels it may change; NULL: every pixel */
  int queries;                  /* budget per image */
  float p_init;                 /* Square: the share of pixels of the first squares */
  int samples;                  /* SPSA: direction pairs per step */
  float delta, step;            /* SPSA: probe size; step (0: eps / 4) */
  uint64_t seed;
  const int *index; /* per image: its random stream's number (rng_seed_stream); NULL: */
  int index_base;   /* index_base + its row */
  MarginFn margin;
  void *ctx;
  int *queries_used; /* per image, out (NULL: not counted) */
} QuerySearch;
/* Each image's random stream of a query search, from its seed and index (NULL when out of
 * memory; free() it). */
Rng *query_search_streams(const QuerySearch *s);
/* Square Attack, L-inf (Andriushchenko et al. 2020): random squares of +-eps kept when the
 * margin drops, until it is negative or the budget is spent. */
Status square_search(const QuerySearch *s, const float *x, float *x_adv, MrError *err);
/* SPSA (Uesato et al. 2018): the margin's gradient estimated from `samples` pairs of
 * Rademacher probes of size delta, then a signed step projected onto the eps ball, the
 * allowed pixels and [0,1]; the lowest margin found is kept. */
Status spsa_search(const QuerySearch *s, const float *x, float *x_adv, MrError *err);

/* DAG's target masks (paper 002, Fig. 2), made from the clean prediction
 * so they ask the model to change its own answer:
 *   A: every pixel background (class 0), the hardest;
 *   B: a random `fraction` of the image, in cells of cell x cell pixels, set
 *      to one randomly chosen class per image, the rest kept (single pixels,
 *      cell 1, are below what a convolutional net can draw at all);
 *   C: one class (`cls`, or -1: each image's largest foreground class of the
 *      clean prediction) dilated `dilate_iters` times with a 3x3 square
 *      structuring element (8-connected) over its neighbours, the rest kept.
 * Image i draws from its own stream (seed, first + i): the same target
 * whatever the batch. */
typedef enum { DAG_TARGET_A = 0, DAG_TARGET_B = 1, DAG_TARGET_C = 2, DAG_TARGET_COUNT } DagTarget;
#define DAG_TARGETS_ALL ((1 << DAG_TARGET_COUNT) - 1) /* SegSweepOptions.dag: types A, B, C */
typedef struct {
  float fraction;   /* B; default 0.1 */
  int cell;         /* B; default 4 */
  int cls;          /* C; default -1 */
  int dilate_iters; /* C; default 3 */
} DagTargetOptions;
DagTargetOptions dag_target_options_default(void);
const char *dag_target_name(DagTarget t); /* "A", "B", "C" */
int dag_target_parse(const char *name);   /* -1 if unknown */
void dag_target(DagTarget t, const DagTargetOptions *o, const int *clean, int n, int h, int w,
                int k, uint64_t seed, int first, int *target);

/* ---- robustness evaluation --------------------------------------------------- */

/* SSIM (11x11 Gaussian window, sigma 1.5, range 1) of two (c,h,w) images. */
double image_ssim(const float *a, const float *b, int c, int h, int w);
/* PSNR in dB for range 1; INFINITY for identical images. */
double image_psnr(const float *a, const float *b, size_t n);
/* Running sums of the size of perturbations adv - clean over images: L-inf,
 * L2, MSE, SSIM, and PSNR over the images where it is finite (psnr_finite of
 * the n; an identical image has none). */
typedef struct {
  double linf, l2, mse, ssim, psnr;
  int n, psnr_finite;
} PerturbationSum;
/* One image's terms of those sums (psnr INFINITY when adv == clean). */
typedef struct {
  double linf, l2, mse, ssim, psnr;
} PerturbationOne;
PerturbationOne perturbation_measure(const float *clean, const float *adv, int c, int h, int w);
void perturbation_accumulate(PerturbationSum *s, const PerturbationOne *one);
void perturbation_add(PerturbationSum *s, const float *clean, const float *adv, int c, int h,
                      int w);

typedef struct {
  char attack[24];
  Norm norm;
  float eps;
  TargetMode target;
  int n, correct, clean_correct, flipped; /* flipped: clean-correct images the attack fooled */
  double accuracy, drop_pct, success_rate;
  double balanced_accuracy, auc; /* of the adversarial images' predictions and scores */
  int *confusion;                /* (k, k) under attack: row = true class, column = predicted */
  int *pred;                     /* (n) each image's prediction under attack */
  float *pred_confidence;        /* (n) its softmax probability */
  /* binary tasks: positives (of SweepResult.positive) still called positive under
   * attack, and those the model found clean that the attack turned negative */
  int positives_detected, missed;
  double linf, l2, mse, ssim, psnr, confidence; /* means over the images */
  double seconds;
  int volume_correct; /* volume sets: labelled volumes whose mean slice prediction is right */
  int carried;        /* images fooled at a smaller eps of this attack, not attacked again */
} SweepRow;

typedef enum { NOISE_GAUSSIAN, NOISE_RICIAN, NOISE_POISSON, NOISE_SPECKLE, NOISE_COUNT } NoiseKind;
const char *noise_name(NoiseKind k);
/* Adds noise of strength `level` (std on the [0,1] scale; Poisson: 1/sqrt(photons per unit)). */
void noise_apply(float *x, size_t n, NoiseKind kind, float level, Rng *rng);

typedef struct {
  NoiseKind kind;
  float eps; /* the adversarial row whose SSIM it matches */
  double level, ssim, accuracy;
} NoiseRow;

typedef struct {
  char name[48];
  int passed;
  char message[320];
} CheckRow;

typedef struct {
  int n, k;
  double clean_accuracy, clean_balanced_accuracy, clean_auc;
  int *clean_confusion;    /* (k, k) */
  int *clean_pred;         /* (n) */
  float *clean_confidence; /* (n) */
  int majority_class;      /* the most frequent true class, and its share: what a */
  double majority_share;   /* constant classifier scores as accuracy */
  int positive;            /* binary tasks: the class a missed diagnosis misses; -1 otherwise */
  int positives, clean_detected; /* true positives, and those the model finds clean */
  /* volume sets (Dataset.volume): the volumes, the labelled ones, and how many of those the
   * mean of the clean slice probabilities gets right (each row: under its attack) */
  int volumes, volumes_labelled, clean_volume_correct;
  char **class_names; /* (k), owned */
  /* the eps at which the worst attack leaves half the clean balanced
   * accuracy (linear between grid points); NAN if it never does */
  double halving_eps;
  SweepRow *rows;
  int n_rows;
  NoiseRow *noise;
  int n_noise;
  CheckRow *checks;
  int n_checks;
  int carried;                    /* SweepOptions.carry was in force */
  char training[MR_TRAINING_LEN]; /* the model's training record */
} SweepResult;

/* Binary tasks: the class whose miss is a missed diagnosis: `name` when
 * given (a class name, or its index), else the class named like a finding
 * (malignant, pneumonia, yes, tumour, abnormal, positive, ...), else class 1.
 * -1 for more than two classes or an unknown name. */
int positive_class(const Net *net, const char *name);
/* Class c's name in r, "?" when out of range or unnamed. */
const char *sweep_class_name(const SweepResult *r, int c);
/* The lowest balanced accuracy any attack row at eps leaves; NAN if none. */
double sweep_worst_balanced(const SweepResult *r, float eps);

typedef void (*SweepProgressFn)(const char *what, int done, int total, void *ctx);

/* Radiomics stability (src/radiomics/stability.c): each feature's agreement between clean
 * and perturbed images, ICC(3,1) over the images, under Gaussian, Rician and Poisson noise
 * and under the adversarial perturbation, the noise bisected per image to the SSIM of that
 * image's adversarial example. */
#define RAD_STABILITY_NOISES 3
typedef struct {
  int n_features, n_images;
  double mean_ssim;        /* of the adversarial (and so of the noisy) images */
  char (*tags)[48];        /* every feature */
  char (*names)[136];      /* "family: name" */
  double *icc;             /* (n_features, RAD_STABILITY_NOISES + 1): the noises, then the attack */
  double *moved_per_ssim;  /* the attack's mean |change| in clean SDs per unit of SSIM lost */
  unsigned char *in_model; /* the model reads it */
} RadiomicsStability;
double radiomics_icc31(const double *a, const double *b, int n);
/* "gaussian", "rician", "poisson", then "adversarial" */
const char *radiomics_stability_kind(int v);
Status radiomics_stability(const RadiomicsModel *m, const Dataset *d, int count,
                           const RadiomicsAttackOptions *o, Journal *journal,
                           SweepProgressFn progress, void *ctx, RadiomicsStability *out,
                           MrError *err);
void radiomics_stability_free(RadiomicsStability *s);

/* Triage (per-image smallest flipping eps, below) and segmentation triage. */
#define TRIAGE_EPS_MAX 0.05f
#define TRIAGE_TOL 1e-4f
#define TRIAGE_FLAG_FRAC 0.2f
/* FMN steps (and its 6 forward-only line-search steps) that match the 10-step PGD bisection's
 * bound on 97% of PneumoniaMNIST's test images at a fifth of its cost (bench/RESULTS.md) */
#define TRIAGE_FMN_STEPS 12
typedef struct {
  AttackOptions attack; /* fgsm, bim, pgd or mifgsm (segmentation: not mifgsm) */
  float eps_max, tol;   /* bisection to tol below eps_max */
  float flag_frac;      /* the most fragile share flagged for review */
  float dice_threshold; /* segmentation: broken when Dice vs the clean mask falls below it */
  int batch;
  Journal *journal;  /* finished batches kept for --resume (NULL: none) */
  const char *scope; /* prefix of the journal keys (NULL: "") */
} TriageOptions;
/* PGD at the defaults above, Dice threshold 0.5, batch 128. */
TriageOptions triage_options_default(void);

typedef struct {
  const AttackKind *attacks;
  int n_attacks;
  const float *eps;
  int n_eps;
  AttackOptions base; /* norm, iterations, restarts, target, seed */
  int batch;
  int noise;  /* the noise contrast (paper 002) */
  int checks; /* the self-checks against a failed evaluation */
  /* bounded untargeted attacks, eps ascending: an image fooled at one eps counts as fooled at
   * every larger one (its adversarial example lies in the larger ball) and is not attacked
   * again; the rest are attacked as they would be alone (their own random streams). Robust
   * accuracy is then never above the uncarried sweep's, for less work; the self-check that
   * accuracy falls with eps holds by construction and is left out. */
  int carry;
  const char *positive; /* binary tasks: see positive_class; NULL: by its name */
  Journal *journal;     /* finished batches kept for --resume (NULL: none) */
  const char *scope;    /* prefix of this sweep's journal keys (NULL: "") */
} SweepOptions;

/* Attacks every image of d with every attack at every eps, streaming
 * batches; then the noise contrast and the self-checks (Carlini et al.
 * 2019) when asked. */
Status robustness_sweep(Net *net, const Dataset *d, const SweepOptions *o, SweepProgressFn progress,
                        void *ctx, SweepResult *r, MrError *err);
void sweep_result_free(SweepResult *r);
/* Accuracy under attack o (eps 0: clean) of the images pick[0..n) of d (pick NULL: every image,
 * n ignored), over the labelled ones, each attacked from its own index's random stream. Under
 * MPI the batches come from a queue the ranks share and every rank gets the accuracy. */
Status robust_accuracy(Net *net, const Dataset *d, const int *pick, int n, const AttackOptions *o,
                       int batch, double *acc, MrError *err);
/* An 8-bit PNG of a (c,h,w) [0,1] image, enlarged `scale` times. */
Status image_write_png(const char *path, const float *img, int c, int h, int w, int scale,
                       MrError *err);
/* PNGs of the first `count` images clean / adversarial / amplified
 * difference under attack o, listed in dir/examples.json. */
Status examples_write(Net *net, const Dataset *d, const AttackOptions *o, int count,
                      const char *dir, MrError *err);
/* dir/report.html from dir/results.json, examples.json and triage.json
 * (whichever exist); renders from the JSON only. */
Status report_render(const char *dir, MrError *err);
/* results.json, results.csv (a row per attack and eps) and images.csv (a row
 * per image of d: its file, true class, clean and attacked predictions) into
 * dir, atomically. */
Status sweep_write(const SweepResult *r, const Dataset *d, const char *dir, const char *model,
                   const char *data, const char *split, MrError *err);
/* "0.004 (1.02/255)": eps with its size in grey levels of `bits`-bit data,
 * and a "*" when it is smaller than one step. */
void eps_describe(float eps, int bits, char *out, size_t n);
/* The same for eps on data set d: "0.0013 (2 HU)" through its window, else as above (grey
 * levels for L-inf only). */
void eps_describe_set(float eps, const Dataset *d, Norm norm, char *out, size_t n);

/* ---- segmentation robustness (paper 002, Tables 1 and 2, segmentation) ------ */

typedef struct {
  char attack[24]; /* "pgd", "dag-A", ... */
  Norm norm;
  float eps;                   /* 0: DAG unbounded */
  int dag_target;              /* DagTarget for DAG rows, else -1 */
  double dice, iou, pixel_acc; /* against the ground truth (SegMetrics means) */
  double dice_vs_clean;        /* the adversarial prediction against the clean one */
  double target_reached;       /* targeted rows: share of pixels showing the target; -1 otherwise */
  double changed_reached;      /* of the pixels the target changes, the share now showing it; -1 */
  double drop_pct;             /* of the clean Dice */
  double linf, l2, mse, ssim, psnr; /* of the perturbations, means over images */
  double *class_dice;               /* (k) pooled over the set */
  double *image_dice;               /* (n) each image's mean foreground Dice */
  double seconds;
} SegRow;

typedef struct {
  NoiseKind kind;
  double ssim_target; /* the adversarial rows' mean SSIM it is matched to */
  double level, ssim, dice;
} SegNoiseRow;

typedef struct {
  int n, k;
  SegMetrics clean;
  SegRow *rows;
  int n_rows;
  SegNoiseRow *noise;
  int n_noise;
  double adv_mean_dice, adv_drop_pct; /* Table 1: the mean Dice over the DAG rows (over every
                                         row without DAG); the noise matches their mean SSIM */
  char **class_names;                 /* (k), owned */
  char training[MR_TRAINING_LEN];
} SegSweepResult;

typedef struct {
  const AttackKind *attacks; /* gradient attacks (fgsm, bim, pgd): a row per eps */
  int n_attacks;
  const float *eps;
  int n_eps;
  AttackOptions base;  /* norm, iterations, seed */
  int dag;             /* DAG toward each target type t whose bit (1 << t) is set; 0: none */
  AttackOptions dag_o; /* DAG's iterations, gamma, threshold and eps (0: unbounded) */
  DagTargetOptions dag_targets;
  int noise; /* Rician, Gaussian and speckle noise at the adversarial rows' SSIM */
  int batch;
  Journal *journal;  /* finished batches kept for --resume (NULL: none) */
  const char *scope; /* prefix of this sweep's journal keys (NULL: "") */
} SegSweepOptions;

/* Attacks every image of a segmentation set (d->masks) with every attack at
 * every eps and with DAG toward each target type; Dice against the truth and
 * against the clean prediction, the target reached, the perturbation sizes;
 * then the noise contrast. */
Status seg_sweep(Net *net, const Dataset *d, const SegSweepOptions *o, SweepProgressFn progress,
                 void *ctx, SegSweepResult *r, MrError *err);
void seg_sweep_result_free(SegSweepResult *r);
/* seg_results.json, seg_results.csv (a row per attack) and seg_images.csv (each
 * image's Dice clean and under every row) into dir, atomically. */
Status seg_sweep_write(const SegSweepResult *r, const Dataset *d, const char *dir,
                       const char *model, const char *data, const char *split, MrError *err);
/* For the report: the first `count` images, each as the image, the ground
 * truth, the clean prediction and, per row of the sweep options (the largest
 * eps of each gradient attack, and each DAG type), the adversarial prediction
 * as overlays plus the amplified perturbation; PNGs in dir/images/, listed in
 * dir/seg_examples.json with each image's Dice. */
Status seg_examples_write(Net *net, const Dataset *d, const SegSweepOptions *o, int count,
                          const char *dir, MrError *err);
/* seg_compare.json: each model's Table 1 row (clean, Rician, adversarial
 * average, % drop) and sweep rows, and (transfer: DAG_TARGET_COUNT n x n
 * matrices, or NULL) the Table 2 transfer matrices. */
Status seg_compare_write(const SegSweepResult *res, Net *const *nets, const char *const *names,
                         int n, const double *transfer, const char *dir, const char *data,
                         MrError *err);
/* Mean Dice of d under attack o (eps 0 and not DAG: clean), in batches; DAG
 * rows need o->target_mask unset and take their targets from `dag` (>= 0). */
Status seg_robust_dice(Net *net, const Dataset *d, const AttackOptions *o, int batch, double *dice,
                       MrError *err);
/* dice[i * n + j]: mean Dice of model j on adversarial examples crafted on
 * model i (rows: crafted on, columns: evaluated on; the diagonal is the
 * white-box score), by attack a, or by DAG toward target type t (t >= 0, the
 * targets from model i's clean prediction). Paper 002 Table 2. ssim and mse
 * (n each, either may be NULL): the mean SSIM and MSE of each source's
 * examples. */
Status seg_transfer_matrix(Net *const *nets, int n, const Dataset *d, const AttackOptions *a, int t,
                           const DagTargetOptions *to, int batch, Journal *journal, double *dice,
                           double *ssim, double *mse, MrError *err);
/* Noise of `kind` at the level whose mean SSIM matches ssim_target (bisected
 * on up to 64 images), then the mean Dice of the set under it. */
Status seg_noise_row(Net *net, const Dataset *d, NoiseKind kind, double ssim_target, uint64_t seed,
                     int batch, SegNoiseRow *out, MrError *err);
/* Segmentation triage: per image the smallest eps at which the attack
 * (fgsm, bim or pgd, untargeted against the clean prediction) brings the
 * Dice between the adversarial and the clean prediction below
 * dice_threshold, by bisection to tol below eps_max; the most fragile
 * flag_frac are flagged, and the set's Dice against the truth is given with
 * and without them. Needs no truth for the search itself. */
typedef struct {
  int index;
  float min_eps;     /* INFINITY if it holds up to eps_max */
  float eps_below;   /* the largest eps tried that did not */
  double clean_dice; /* against the truth */
  int flagged;
} SegTriageItem;
typedef struct {
  SegTriageItem *items; /* most fragile first */
  int n, n_flagged;
  float eps_max, tol, flag_frac, dice_threshold;
  double dice_all, dice_aware; /* mean Dice against the truth, all and without the flagged */
  char attack[24];
} SegTriageResult;
Status seg_triage_run(Net *net, const Dataset *d, const TriageOptions *o, SweepProgressFn progress,
                      void *ctx, SegTriageResult *r, MrError *err);
void seg_triage_free(SegTriageResult *r);
/* seg_triage.csv and seg_triage.json into dir, most fragile first, atomically. */
Status seg_triage_write(const SegTriageResult *r, const Dataset *d, const char *dir,
                        const char *model, const char *data, MrError *err);
/* The DAG target mask for images [first, first+b) of a batch from their clean
 * prediction (net_segment), into target (b,H,W). */
void seg_dag_targets(Net *net, const float *x, int b, int first, DagTarget t,
                     const DagTargetOptions *to, uint64_t seed, int *clean, int *target);

/* ---- triage: per-image adversarial sensitivity (paper 001 Table 2) -------- */

typedef struct {
  int index, label, pred; /* label -1: unlabelled */
  float confidence;       /* softmax probability of the prediction */
  float margin;           /* between the two largest logits */
  float entropy;          /* of the softmax, in nats */
  float
      min_eps; /* smallest eps found that changes the prediction; INFINITY if none up to eps_max */
  float eps_below; /* the largest eps tried that did not change it (min_eps - eps_below <= tol) */
  int flip_class;  /* what the prediction becomes at min_eps; -1 if it never flips */
  int flagged;     /* among the most fragile flag_frac, for human review */
} TriageItem;

/* A volume's triage: its slices are images [first, first + slices) of the set. */
typedef struct {
  int first, slices, label, pred; /* pred: the argmax of the mean slice probabilities */
  float confidence;               /* that mean probability */
  float min_eps, eps_below;       /* as for an image (INFINITY: none up to eps_max) */
  int flip_class, flagged;
} VolumeTriageItem;

/* What decides which images a deferral sends to a human first: the
 * adversarial sensitivity (smallest flipping eps), or the baselines a user
 * would try first: low softmax confidence, a small margin between the two
 * top logits, high predictive entropy. */
typedef enum {
  DEFER_ADVERSARIAL = 0,
  DEFER_CONFIDENCE = 1,
  DEFER_MARGIN = 2,
  DEFER_ENTROPY = 3,
  DEFER_COUNT
} DeferScore;
const char *defer_name(DeferScore s);

#define TRIAGE_CURVE_POINTS 11 /* deferring 0, 5, ..., 50% */
typedef struct {
  TriageItem *items; /* most fragile first: ascending min_eps, then confidence */
  int n, n_flagged;
  int labelled;        /* every image has a label: accuracies and curves are defined */
  int n_flagged_wrong; /* flagged images the model already got wrong */
  float eps_max, tol, flag_frac;
  double accuracy_all, accuracy_aware; /* aware: without the flagged images */
  double balanced_all, balanced_aware;
  double curve_frac[TRIAGE_CURVE_POINTS];
  /* accuracy and balanced accuracy of the kept images, deferring by each score */
  double curve_acc[DEFER_COUNT][TRIAGE_CURVE_POINTS], curve_bal[DEFER_COUNT][TRIAGE_CURVE_POINTS];
  double curve_auc[DEFER_COUNT]; /* mean accuracy over each deferral curve */
  char attack[24];
  int iters;   /* of the attack: per bisection step, or fmn's steps */
  int one_run; /* fmn: one minimal-norm run per image, no bisection (eps_below 0, no tol) */
  /* volume sets (Dataset.volume): per volume, most fragile first, the smallest eps at which
   * its mean slice prediction changes, each slice attacked in its own ball */
  VolumeTriageItem *volumes;
  int n_volumes, n_volumes_flagged, volumes_labelled;
  double volume_accuracy_all, volume_accuracy_aware; /* aware: without the flagged volumes */
} TriageResult;

/* Accuracy and balanced accuracy (over the classes present) of the images
 * kept when the share `frac` that `score` finds most doubtful is deferred. */
void triage_deferral(const TriageItem *items, int n, int k, DeferScore score, double frac,
                     double *acc, double *bal);

/* The defaults every command uses (triage, compare, demo): search eps up to
 * 0.05, bisect to 1e-4, flag the 20% most fragile images (paper 001). */
/* For every image, the smallest eps at which an attack against the clean prediction changes
 * it: bisected with a bounded attack (FGSM, BIM, PGD or MI-FGSM) to tol, or with FMN read off
 * one minimal-norm run (several times faster, and tighter on most images; volumes are still
 * bisected, with PGD). */
Status triage_run(Net *net, const Dataset *d, const TriageOptions *o, SweepProgressFn progress,
                  void *ctx, TriageResult *r, MrError *err);
void triage_free(TriageResult *r);
/* Thumbnails of the `count` most fragile images, dir/images/fragile_<index>.png:
 * write them before triage_write, which lists the ones it finds. */
Status triage_write_thumbnails(const TriageResult *r, const Dataset *d, const char *dir, int count,
                               MrError *err);
/* triage.json and triage.csv: a row per image, most fragile first, naming
 * its file (d) and classes (net). */
Status triage_write(const TriageResult *r, const Dataset *d, const Net *net, const char *dir,
                    const char *model, const char *data, MrError *err);

/* ---- certified robustness: randomized smoothing (Cohen, Rosenfeld, Kolter, ICML 2019) ----- */

#define SMOOTH_ABSTAIN (-1)
typedef struct {
  float sigma;   /* std of the Gaussian noise on [0,1] pixels (not clipped, as the paper) */
  int n0;        /* CERTIFY: noisy samples that select the class */
  long n;        /* CERTIFY: samples that bound its probability; PREDICT: samples that vote */
  double alpha;  /* a certificate or prediction is wrong with probability at most alpha */
  int batch;     /* noisy copies per forward pass (the results do not depend on it) */
  uint64_t seed; /* image i's noise is stream i of the seed */
} SmoothOptions;
/* sigma 0.25, n0 100, n 100000, alpha 0.001 (the paper's), batch 400, seed 1 */
SmoothOptions smooth_options_default(void);

typedef struct {
  int predicted;  /* the smoothed classifier's class, or SMOOTH_ABSTAIN */
  int selected;   /* the class the n0 selection samples chose */
  long count;     /* of the n estimation samples, those the base model put in `selected` */
  double p_lower; /* one-sided (1 - alpha) Clopper-Pearson lower bound on its probability */
  double radius;  /* certified L2 radius, sigma * Phi^-1(p_lower), in [0,1] pixel units; 0
                     when abstaining (p_lower <= 1/2) */
} SmoothCertificate;
/* CERTIFY for one (C,H,W) image; `index` names its noise stream (its index in the set). */
Status smooth_certify(Net *net, const SmoothOptions *o, const float *x, uint64_t index,
                      SmoothCertificate *out, MrError *err);
/* PREDICT: the top class of n noisy samples if the two-sided binomial test of its count
 * against the runner-up's gives p <= alpha, else SMOOTH_ABSTAIN. */
Status smooth_predict(Net *net, const SmoothOptions *o, const float *x, uint64_t index,
                      int *predicted, MrError *err);
/* The share of labelled images (labels >= 0) the smoothed classifier gets right with a
 * certified radius of at least `radius` (the paper's certified accuracy). */
double smooth_certified_accuracy(const SmoothCertificate *c, const int *labels, int n,
                                 double radius);
/* What `certify` found, for certify_write: n certificates of the images pick[0..n) of the
 * set, each with its seconds, and the curve's radii with the base model's PGD-L2 accuracy at
 * each (empirical; NULL when not measured). */
typedef struct {
  const char *model, *data, *split;
  SmoothOptions options;
  int every; /* every K-th image of the set */
  const SmoothCertificate *certs;
  const int *pick;
  const double *seconds;
  int n;
  const double *radii;
  int n_radii;
  const double *empirical;
  int pgd_steps;
  double elapsed;
} CertifyReport;
/* dir/certify.json (the options, the curve, every image by index and anonymous id) and
 * dir/certify.csv (a row per image, naming its file), both written atomically. */
Status certify_write(const CertifyReport *r, const Dataset *d, const Net *net, const char *dir,
                     MrError *err);

/* The distributions behind them (src/eval/stats.cpp, Boost.Math): the lower end of the
 * one-sided (1 - alpha) Clopper-Pearson interval of k successes in n, the standard normal
 * quantile, and the two-sided exact binomial test of k in n against p = 1/2. NaN on
 * arguments out of range. */
double clopper_pearson_lower(long k, long n, double alpha);
double normal_quantile(double p);
double binomial_test_half(long k, long n);

/* ---- explanations: saliency maps and feature embeddings (paper 004 Figs 3-5,
 * paper 002 Fig 3) ----------------------------------------------------------- */

/* grad (B,C,H,W) = d(logit of class cls[b]) / d(pixels) of each image, eval
 * mode (Simonyan et al. 2014's vanilla gradient). With smooth_samples > 0,
 * SmoothGrad (Smilkov et al. 2017): the mean gradient over that many copies
 * with Gaussian noise of std smooth_sigma on the [0,1] scale. */
Status saliency_gradient(Net *net, const float *x, const int *cls, int batch, int smooth_samples,
                         float smooth_sigma, uint64_t seed, float *grad, MrError *err);
/* map (H,W) = max over channels of |grad|, of one image */
void saliency_map(const float *grad, int c, int h, int w, float *map);

/* PCA of the rows of a (n, d) matrix to 2-D: fitted on the first n_fit rows
 * (clean images), every row projected (adversarial ones into the clean
 * space). xy (n, 2); explained (2): the fitted variance share of each axis. */
Status pca_2d(const float *features, int n, int d, int n_fit, float *xy, double explained[2],
              MrError *err);

/* For the report: the first `count` images and their adversarial versions
 * under o, each beside its vanilla-gradient and SmoothGrad maps for the class
 * the model predicts (heat-coloured PNGs in dir/saliency/, listed in
 * dir/saliency.json). */
Status saliency_write(Net *net, const Dataset *d, const AttackOptions *o, int count,
                      int smooth_samples, float smooth_sigma, const char *dir, MrError *err);
/* dir/embedding.json: the penultimate features of the first n images, clean
 * and under o, in the 2-D PCA of the clean ones; with a journal, each batch's
 * adversarial images are kept for --resume. */
Status embedding_write(Net *net, const Dataset *d, const AttackOptions *o, int n, const char *dir,
                       Journal *journal, MrError *err);

/* ---- comparing models on the same data (paper 004's complexity study,
 * paper 002's Tables 1 and 2) ---------------------------------------------- */

/* Every model must take the same input (channels, size) and answer the same
 * classes (count and, where both name them, names): else a clear error. */
Status compare_check_models(Net *const *nets, const char *const *names, int n, MrError *err);

/* acc[i * n + j]: accuracy of model j on adversarial examples crafted by
 * attack a on model i (rows = source, columns = target; the diagonal is the
 * white-box accuracy). Crafted batch by batch; nothing is stored but, with
 * a journal, each batch's counts. */
Status transfer_matrix(Net *const *nets, int n, const Dataset *d, const AttackOptions *a, int batch,
                       Journal *journal, double *acc, MrError *err);

typedef struct {
  char name[160];
  char arch[MR_ARCH_LEN];
  size_t params;
  double flops;
  char training[MR_TRAINING_LEN]; /* the model file's training record */
  SweepResult sweep;
  int triaged;
  double min_eps_median; /* triage: median smallest flipping eps; INFINITY if above eps_max */
  double accuracy_aware; /* triage: accuracy without the flagged images */
  double balanced_aware; /* triage: balanced accuracy without them */
  /* what models are ranked by: the mean over the eps grid of the worst
   * balanced accuracy any attack leaves at that eps (a constant classifier
   * scores 1/k, however "robust" its accuracy looks) */
  double robust_balanced;
  int near_chance;      /* clean balanced accuracy within 5 points of chance: ranked last */
  int rank;             /* 1 = the one to deploy */
  TriageResult triage;  /* when triaged: the per-image list (owned) */
  char triage_csv[200]; /* where a caller wrote that list, relative to the output folder */
} CompareEntry;

typedef struct {
  SweepOptions sweep;
  int triage;             /* the per-image minimal eps (slow: a bisection per image) */
  TriageOptions triage_o; /* its batch, journal and scope are the sweep's */
  int transfer;           /* the transfer matrix */
  AttackOptions transfer_attack;
} CompareOptions;

typedef struct {
  CompareEntry *models;
  int n;
  int n_images;
  double *transfer; /* n * n, NULL if not run */
  AttackOptions transfer_attack;
  float triage_eps_max;
  int bits;               /* the data's stored bits per sample (grey levels in tables); 0: floats */
  IntensityWindow window; /* DICOM/NIfTI: the data's window (eps in HU too); width 0: none */
  int best;               /* the model to deploy (rank 1); -1 when every one is near chance */
  char verdict[640];      /* which model to deploy and why, in plain words */
} CompareResult;

Status compare_run(Net *const *nets, const char *const *names, int n, const Dataset *d,
                   const CompareOptions *o, SweepProgressFn progress, void *ctx, CompareResult *r,
                   MrError *err);
void compare_result_free(CompareResult *r);
/* A training record in a few words: "standard", "pgd eps 0.004", ... or
 * "unknown" (no or unreadable record). */
void training_summary(const char *record, char *out, size_t n);
/* compare.json, compare.csv and (if run) transfer.csv into dir, atomically */
Status compare_write(const CompareResult *r, const char *dir, const char *data, const char *split,
                     MrError *err);

/* ---- ONNX import: the user's own model, with exact input gradients -------- */

typedef struct {
  float mean[3], std[3]; /* the model's preprocessing, (x - mean) / std on [0,1] pixels */
  float input_scale;     /* > 0: the model takes pixels times this (255: 0..255 pixels) */
  int size;              /* the input's height and width when the file leaves them dynamic */
  int n_classes;         /* when the file's output does not say */
  const char *const *class_names; /* NULL-ended, optional */
} OnnxImportOptions;
/* mean 0, std 1, no scale */
OnnxImportOptions onnx_import_options_default(void);
/* Reads an .onnx model (opsets 9-17) into a net that trains, attacks and
 * saves as any other; refuses, naming the node, its op type and what was not
 * understood, anything it cannot map exactly. */
Net *onnx_import(const char *path, const OnnxImportOptions *o, MrError *err);
/* Writes the net as an ONNX model (opset 13): the normalisation as Sub and
 * Div on [0,1] pixels, logits out, weights under their state_dict names,
 * class names and records in metadata_props; onnx_import reads it back to
 * the same outputs. Atomic. */
Status onnx_export(const Net *net, const char *path, MrError *err);
/* A model file: .onnx through onnx_import with the defaults, else safetensors. */
Net *model_load(const char *path, MrError *err);

#ifdef __cplusplus
}
#endif
#endif
