/* Engine throughput: inference (net_predict), one PGD step (forward + gradient to the input)
 * and one SGD training step, in images/s, for the bench models at 28x28 and
 * 64x64, batch 128, and paper 002's mobilenet, densenet and unet (per-pixel
 * targets) at 64x64 and 128x128, batch 32; with --large, resnet50, vgg16, mobilenet and
 * densenet121 at 224x224 with 3 channels, batch 32 (the papers' ImageNet-sized input);
 * or one model file (--model, .onnx too) or family. --op times one operation only (a
 * process's peak RSS is then that operation's: bench/memory.sh).
 * Prints CSV rows: model,size,channels,op,images_per_s,gflops (forward FLOPs times 1, 2 or 3
 * for forward, PGD step and training step: the passes over the weights),gflops_inside (the
 * same without the kernel taps that fall on padding),conv_share (the share of the time in the
 * convolutions, from a profiled run after the timed ones).
 * --profile adds each row's milliseconds per layer and per op kind (comment lines), and
 * --no-ceiling skips the ceiling measurement.
 * usage: bench_engine [--threads N] [--batch B] [--quick] [--large] [--only MODEL[:SIZE]]
 *                     [--op forward|pgd_step|train_step] [--profile] [--no-ceiling]
 *        bench_engine --model FILE | --family NAME [--size N] [--channels C]
 *                     [--label NAME] [--threads N] [--batch B] [--quick] */
#include <cblas.h>
#include <immintrin.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <oneapi/dnnl/dnnl.h>

#include "medrobust.h"

static double now(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return t.tv_sec + t.tv_nsec * 1e-9;
}

static int cmp_double(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return (x > y) - (x < y);
}

typedef enum { OP_FORWARD, OP_PGD_STEP, OP_TRAIN_STEP } BenchOp;
static const char *op_names[] = {"forward", "pgd_step", "train_step"};

typedef struct {
  Net *net;
  Optimizer *opt;
  float *x, *dx, *probs;
  int *y;
  int batch;
} BenchCtx;

static void run_op(BenchCtx *c, BenchOp op) {
  switch (op) {
    case OP_FORWARD:
      net_predict(c->net, c->x, c->batch, c->probs);
      break;
    case OP_PGD_STEP:
      net_loss_and_input_grad(c->net, c->x, c->y, c->batch, c->dx);
      break;
    case OP_TRAIN_STEP:
      net_zero_grad(c->net);
      net_train_step_grads(c->net, c->x, c->y, c->batch, NULL);
      optim_step(c->opt, net_params(c->net), net_grads(c->net));
      break;
  }
}

/* --profile: per-layer milliseconds per call of `op`, as comment lines after its row, and
 * per op kind; "other" is the call's time outside the layers (input normalisation, loss,
 * softmax, optimiser step). */
/* Milliseconds per call of `op` over `calls` profiled calls (each layer's seconds in
 * net_profile_seconds); negative without the memory to profile. */
static double profiled_ms(BenchCtx *c, BenchOp op, int calls) {
  MrError err = {0};
  if (net_profile_start(c->net, &err) != STATUS_OK) {
    fprintf(stderr, "%s\n", err.msg);
    return -1;
  }
  const double t0 = now();
  for (int i = 0; i < calls; i++) run_op(c, op);
  return (now() - t0) * 1e3 / calls;
}

/* The share of a call spent in the convolutions (forward, with a folded batchnorm in inference,
 * and backward): the part oneDNN's kernels do, the same kernels PyTorch calls. The rest is what
 * the engine itself can still win; a row's ratio divided by this share is the most it could
 * reach with everything else free. */
static double conv_share(BenchCtx *c, BenchOp op) {
  const int calls = 3, n = net_layer_count(c->net);
  const double total = profiled_ms(c, op, calls);
  if (total <= 0) return 0;
  const double *s = net_profile_seconds(c->net);
  double conv_ms = 0;
  for (int i = 0; i < n; i++)
    if (strcmp(net_layer_info(c->net, i).op, "conv2d") == 0)
      conv_ms += (s[i] + s[n + i]) * 1e3 / calls;
  return conv_ms / total;
}

static void print_profile(BenchCtx *c, BenchOp op, const char *label, int size) {
  const int calls = 10, n = net_layer_count(c->net);
  const double total = profiled_ms(c, op, calls);
  if (total < 0) return;
  const double *s = net_profile_seconds(c->net);
  enum { KINDS = 32 };
  const char *kind[KINDS];
  double kind_ms[KINDS][2] = {{0}}, layers_ms = 0;
  int kinds = 0;
  printf("# profile %s %d %s: %.3f ms per call of batch %d\n", label, size, op_names[op], total,
         c->batch);
  printf("# layer,op,out,forward_ms,backward_ms\n");
  for (int i = 0; i < n; i++) {
    const NetLayerInfo li = net_layer_info(c->net, i);
    const double f = s[i] * 1e3 / calls, b = s[n + i] * 1e3 / calls;
    char out[64] = "";
    for (int k = 0, at = 0; k < li.out_ndim && at < (int)sizeof out; k++)
      at += snprintf(out + at, sizeof out - at, k ? "x%d" : "%d", li.out[k]);
    printf("# %d,%s,%s,%.3f,%.3f\n", i, li.op, out, f, b);
    int k = 0;
    while (k < kinds && strcmp(kind[k], li.op)) k++;
    if (k == kinds && kinds < KINDS) kind[kinds++] = li.op;
    if (k < KINDS) kind_ms[k][0] += f, kind_ms[k][1] += b;
    layers_ms += f + b;
  }
  for (int k = 0; k < kinds; k++)
    printf("# kind %s forward %.3f backward %.3f ms (%.1f%%)\n", kind[k], kind_ms[k][0],
           kind_ms[k][1], 100 * (kind_ms[k][0] + kind_ms[k][1]) / total);
  printf("# kind other %.3f ms (%.1f%%)\n", total - layers_ms, 100 * (total - layers_ms) / total);
}

/* median images/s over `reps` timed runs of enough iterations for ~0.3 s */
static double measure(BenchCtx *c, BenchOp op, int reps) {
  run_op(c, op); /* warm-up */
  double t0 = now();
  run_op(c, op);
  double one = now() - t0;
  int iters = one > 0.3 ? 1 : (int)(0.3 / one) + 1;
  double rates[9];
  for (int r = 0; r < reps; r++) {
    t0 = now();
    for (int i = 0; i < iters; i++) run_op(c, op);
    rates[r] = (double)c->batch * iters / (now() - t0);
  }
  qsort(rates, reps, sizeof(double), cmp_double);
  return rates[reps / 2];
}

/* The machine's ceilings on `threads` threads, in GFLOP/s: a register-only FMA loop at the
 * widest vectors the build targets, and OpenBLAS's and oneDNN's sgemm at n = 2048 (the % of
 * peak of bench/compare.py). Printed as a comment line before the CSV header. */
static void print_ceilings(int threads) {
#if defined(__AVX512F__)
  typedef __m512 Vec;
#define VEC_FLOATS 16
#define FMA(a, b, c) _mm512_fmadd_ps(a, b, c)
#define SET1(x) _mm512_set1_ps(x)
#define SUM(v) _mm512_reduce_add_ps(v)
#elif defined(__AVX2__) && defined(__FMA__)
  typedef __m256 Vec;
#define VEC_FLOATS 8
#define FMA(a, b, c) _mm256_fmadd_ps(a, b, c)
#define SET1(x) _mm256_set1_ps(x)
#define SUM(v) (v)[0]
#endif
  double fma_rate = 0;
#ifdef VEC_FLOATS
  const long iters = 20000000;
  for (int rep = 0; rep < 3; rep++) { /* the best of three: clocks ramp */
    float sink = 0;
    const double t0 = now();
#pragma omp parallel num_threads(threads) reduction(+ : sink)
    {
      /* twelve independent chains: enough to cover the FMA latency on two pipes */
      const Vec b = SET1(0.999999f), c = SET1(1e-7f);
      Vec a0 = SET1(1.0f), a1 = a0, a2 = a0, a3 = a0, a4 = a0, a5 = a0, a6 = a0, a7 = a0, a8 = a0,
          a9 = a0, a10 = a0, a11 = a0;
      for (long i = 0; i < iters; i++) {
        a0 = FMA(a0, b, c), a1 = FMA(a1, b, c), a2 = FMA(a2, b, c), a3 = FMA(a3, b, c);
        a4 = FMA(a4, b, c), a5 = FMA(a5, b, c), a6 = FMA(a6, b, c), a7 = FMA(a7, b, c);
        a8 = FMA(a8, b, c), a9 = FMA(a9, b, c), a10 = FMA(a10, b, c), a11 = FMA(a11, b, c);
      }
      a0 = a0 + a1 + a2 + a3 + a4 + a5 + a6 + a7 + a8 + a9 + a10 + a11;
      sink += SUM(a0);
    }
    const double rate = 2.0 * threads * iters * 12 * VEC_FLOATS / (now() - t0) / 1e9;
    if (rate > fma_rate && sink == sink) fma_rate = rate;
  }
#endif
  const int n = 2048;
  float *a = malloc(sizeof(float) * n * n), *b = malloc(sizeof(float) * n * n),
        *c = malloc(sizeof(float) * n * n);
  double sgemm_rate = 0, dnnl_rate = 0;
  if (a && b && c) {
    openblas_set_num_threads(threads); /* the engine runs it single-threaded per image */
    for (long i = 0; i < (long)n * n; i++) a[i] = b[i] = (float)(i % 7) * 0.1f;
    for (int rep = 0; rep < 4; rep++) {
      const double t0 = now();
      cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, n, n, n, 1.0f, a, n, b, n, 0.0f, c, n);
      const double rate = 2.0 * n * n * n / (now() - t0) / 1e9;
      if (rep && rate > sgemm_rate) sgemm_rate = rate; /* the first warms up */
    }
    /* oneDNN's own sgemm (its JIT kernels, the library the convolutions come from) */
    for (int rep = 0; rep < 4; rep++) {
      const double t0 = now();
      if (dnnl_sgemm('N', 'N', n, n, n, 1.0f, a, n, b, n, 0.0f, c, n) != dnnl_success) break;
      const double rate = 2.0 * n * n * n / (now() - t0) / 1e9;
      if (rep && rate > dnnl_rate) dnnl_rate = rate;
    }
  }
  free(a), free(b), free(c);
  openblas_set_num_threads(1);
  printf("# ceiling fma=%.1f sgemm=%.1f dnnl_sgemm=%.1f threads=%d\n", fma_rate, sgemm_rate,
         dnnl_rate, threads);
}

/* One CSV row per operation (or only `only_op`, >= 0) for a net at a batch size; 0, or 1
 * after printing why. */
static int bench_net(Net *net, const char *label, int size, int batch, int reps, int only_op,
                     int profile) {
  MrError err = {0};
  if (net_plan(net, batch, &err) != STATUS_OK) {
    fprintf(stderr, "%s: %s\n", label, err.msg);
    return 1;
  }
  const size_t n = (size_t)batch * net_input_size(net);
  const size_t labels = (size_t)batch * net_output_pixels(net); /* per image or pixel */
  BenchCtx c = {.net = net, .batch = batch};
  c.x = malloc(sizeof(float) * n), c.dx = malloc(sizeof(float) * n),
  c.y = malloc(sizeof(int) * labels);
  c.probs = malloc(sizeof(float) * labels * net_num_classes(net));
  Rng rng;
  rng_seed(&rng, 1);
  for (size_t i = 0; i < n; i++) c.x[i] = rng_uniform(&rng);
  for (size_t i = 0; i < labels; i++) c.y[i] = (int)(i % 2);
  Optimizer opt = {.lr = 0.01f, .momentum = 0.9f, .weight_decay = 5e-4f};
  optim_init(&opt, OPTIM_SGD, net_param_count(net), NULL);
  c.opt = &opt;
  double flops_inside = 0; /* per image, padding taps left out */
  for (int i = 0; i < net_layer_count(net); i++)
    flops_inside += net_layer_info(net, i).flops_inside;
  double rates[3] = {0};
  for (int op = 0; op < 3; op++) /* timed before any profiling (which stays on) */
    if (only_op < 0 || op == only_op) rates[op] = measure(&c, (BenchOp)op, reps);
  for (int op = 0; op < 3; op++) {
    if (only_op >= 0 && op != only_op) continue;
    /* the convolutions' and dense layers' work: a forward, plus the input gradient (a PGD
     * step), plus the weight gradient (a training step) */
    const double passes = 1 + op;
    printf("%s,%d,%d,%s,%.1f,%.1f,%.1f,%.3f\n", label, size, net_spec(net)->in_c, op_names[op],
           rates[op], rates[op] * net_flops(net) * passes / 1e9,
           rates[op] * flops_inside * passes / 1e9, conv_share(&c, (BenchOp)op));
    if (profile) print_profile(&c, (BenchOp)op, label, size);
    fflush(stdout);
  }
  optim_free(&opt);
  free(c.x), free(c.dx), free(c.y), free(c.probs);
  return 0;
}

int main(int argc, char **argv) {
  int threads = 2, batch = 128, reps = 3, only_size = 0, large = 0, only_op = -1, ceiling = 1,
      profile = 0;
  char only_model[64] = "";
  const char *model_file = NULL, *label = NULL, *family = NULL;
  int size = 64, channels = 1;
  for (int i = 1; i < argc; i++) {
    if (strcmp(argv[i], "--threads") == 0 && i + 1 < argc)
      threads = atoi(argv[++i]);
    else if (strcmp(argv[i], "--batch") == 0 && i + 1 < argc)
      batch = atoi(argv[++i]);
    else if (strcmp(argv[i], "--quick") == 0)
      reps = 1;
    else if (strcmp(argv[i], "--large") == 0)
      large = 1;
    else if (strcmp(argv[i], "--no-ceiling") == 0) /* profiling one row */
      ceiling = 0;
    else if (strcmp(argv[i], "--profile") == 0)
      profile = 1;
    else if (strcmp(argv[i], "--op") == 0 && i + 1 < argc) {
      const char *name = argv[++i];
      for (int op = 0; op < 3; op++)
        if (!strcmp(name, op_names[op])) only_op = op;
      if (only_op < 0) {
        fprintf(stderr, "bench_engine: --op takes forward, pgd_step or train_step\n");
        return 2;
      }
    } else if (strcmp(argv[i], "--model") == 0 && i + 1 < argc)
      model_file = argv[++i];
    else if (strcmp(argv[i], "--label") == 0 && i + 1 < argc)
      label = argv[++i];
    else if (strcmp(argv[i], "--family") == 0 && i + 1 < argc)
      family = argv[++i];
    else if (strcmp(argv[i], "--size") == 0 && i + 1 < argc)
      size = atoi(argv[++i]);
    else if (strcmp(argv[i], "--channels") == 0 && i + 1 < argc)
      channels = atoi(argv[++i]);
    else if (strcmp(argv[i], "--only") == 0 && i + 1 < argc) {
      snprintf(only_model, sizeof only_model, "%s", argv[++i]);
      char *colon = strchr(only_model, ':');
      if (colon) *colon = '\0', only_size = atoi(colon + 1);
    } else {
      fprintf(stderr,
              "usage: bench_engine [--threads N] [--batch B] [--quick] [--large] "
              "[--only MODEL[:SIZE]] [--op OP] [--no-ceiling] [--profile]\n"
              "       bench_engine --model FILE | --family NAME [--size N] [--channels C]\n"
              "                    [--label NAME] [--threads N] [--batch B] [--quick]\n");
      return 2;
    }
  }
  mr_set_threads(threads);
  if (ceiling) print_ceilings(threads);
  if (model_file || family) { /* one model file (.onnx through the importer) or family */
    MrError err = {0};
    ModelSpec spec = family ? model_spec_default(family, channels, size, size, 2) : (ModelSpec){0};
    Net *net = family ? model_build(&spec, 1, &err) : model_load(model_file, &err);
    if (!net) {
      fprintf(stderr, "%s\n", err.msg);
      return 1;
    }
    printf("model,size,channels,op,images_per_s,gflops,gflops_inside,conv_share\n");
    const int rc = bench_net(net,
                             label    ? label
                             : family ? family
                                      : model_file,
                             net_spec(net)->in_h, batch, reps, only_op, profile);
    net_free(net);
    return rc;
  }
  /* the classic rows at --batch, then paper 002's families at batch 32 */
  typedef struct {
    const char *model;
    int size, batch, channels;
  } Row;
  Row rows[40];
  int n_rows = 0;
  const int classic_sizes[2] = {28, 64}, new_sizes[2] = {64, 128};
  const char *classic[] = {"cbr-larget", "cnn", "resnet8", "resnet20"};
  const char *paper002[] = {"mobilenet", "densenet", "unet"};
  for (int s = 0; s < 2; s++)
    for (int m = 0; m < 4; m++) rows[n_rows++] = (Row){classic[m], classic_sizes[s], batch, 1};
  for (int s = 0; s < 2; s++)
    for (int m = 0; m < 3; m++) rows[n_rows++] = (Row){paper002[m], new_sizes[s], 32, 1};
  const char *imagenet[] = {"resnet50", "vgg16", "mobilenet", "densenet121"};
  for (int m = 0; large && m < 4; m++) rows[n_rows++] = (Row){imagenet[m], 224, 32, 3};
  printf("model,size,channels,op,images_per_s,gflops,gflops_inside,conv_share\n");
  for (int r = 0; r < n_rows; r++) {
    const Row *row = &rows[r];
    if ((only_model[0] && strcmp(only_model, row->model) != 0) ||
        (only_size && only_size != row->size))
      continue;
    ModelSpec spec = model_spec_default(row->model, row->channels, row->size, row->size, 2);
    MrError err = {0};
    Net *net = model_build(&spec, 1, &err);
    if (!net) {
      fprintf(stderr, "%s: %s\n", row->model, err.msg);
      return 1;
    }
    const int rc = bench_net(net, row->model, row->size, row->batch, reps, only_op, profile);
    net_free(net);
    if (rc) return rc;
  }
  return 0;
}
