/* Every op's backward against central finite differences (w.r.t. its input
 * and its parameters), the fast conv against the naive oracle, and 1 vs 2
 * threads. L = sum(out * R) for a fixed random R, so dL/dout = R. */
#include <omp.h>

#include "layers/layers.h"
#include "testutil.h"

#define TOL_LINEAR 1e-3 /* ops linear in the checked input: only float rounding */
#define TOL_SMOOTH 5e-3 /* batchnorm, softmax: curvature with h = 1e-3 */

typedef struct {
  Conv2dDims d;
  float *inp, *w, *b, *out, *R, *scratch;
} ConvCtx;

static double conv_loss(void *p) {
  ConvCtx *c = p;
  conv2d_forward(c->out, c->inp, c->w, c->b, c->d, c->scratch);
  return dot_double(c->out, c->R, (size_t)c->d.B * c->d.OC * c->d.OH * c->d.OW);
}

/* The oneDNN path, NCHW and NHWC (its blocked, aliased, cropped and pointwise forms), agrees with
 * the oracle's outputs and gradients and accumulates into its gradients. */
static void check_conv_dnnl(Conv2dDims d, const float *inp, const float *w, const float *b,
                            const float *R_nchw, const float *out_naive, const float *dinp_n,
                            const float *dw_n, const float *db_n) {
  /* float sums of taps x channels terms in [-1, 1]: their rounding grows with the count */
  const int terms = d.KH * d.KW * (d.C > d.OC ? d.C : d.OC) / d.groups;
  const double tol = terms > 1024 ? 1e-4 * terms / 1024 : 1e-4;
  const size_t ni = (size_t)d.B * d.C * d.H * d.W,
               nw = (size_t)d.OC * (d.C / d.groups) * d.KH * d.KW;
  const size_t no = (size_t)d.B * d.OC * d.OH * d.OW;
  float *out_d = malloc(4 * no), *dinp_d = malloc(4 * ni), *dw_d = malloc(4 * nw),
        *db_d = malloc(4 * d.OC);
  float *inp_cl = malloc(4 * ni), *R_cl = malloc(4 * no), *out_cl = malloc(4 * no),
        *dinp_cl = malloc(4 * ni);
  nchw_to_nhwc(inp_cl, 0, inp, d.B, d.C, d.H * d.W);
  nchw_to_nhwc(R_cl, 0, R_nchw, d.B, d.OC, d.OH * d.OW);
  for (int cl = 0; cl < 2; cl++) {
    ConvDnnl *fast = conv2d_dnnl_create(d, 1, cl);
    assert_non_null(fast);
    const float *x = cl ? inp_cl : inp, *R = cl ? R_cl : R_nchw;
    float *y = cl ? out_cl : out_d, *dx = cl ? dinp_cl : dinp_d;
    void *ws[CONV_WS_COUNT];
    for (int s = 0; s < CONV_WS_COUNT; s++)
      ws[s] = aligned_alloc(64, (conv2d_dnnl_workspace_bytes(fast, s) + 63) / 64 * 64 + 64);
    for (size_t i = 0; i < ni; i++) dx[i] = 1.0f;
    for (size_t i = 0; i < nw; i++) dw_d[i] = 1.0f;
    for (int i = 0; i < d.OC; i++) db_d[i] = 1.0f;
    conv2d_dnnl_forward(fast, ws, y, x, w, b);
    if (cl) nhwc_to_nchw(out_d, 0, out_cl, d.B, d.OC, d.OH * d.OW);
    assert_true(max_abs_diff(out_naive, out_d, no) < tol);
    conv2d_dnnl_backward(fast, ws, dx, 1, dw_d, db_d, R, x, w);
    if (cl) nhwc_to_nchw(dinp_d, 0, dinp_cl, d.B, d.C, d.H * d.W);
    for (size_t i = 0; i < ni; i++) dinp_d[i] -= 1.0f;
    for (size_t i = 0; i < nw; i++) dw_d[i] -= 1.0f;
    for (int i = 0; i < d.OC; i++) db_d[i] -= 1.0f;
    assert_true(max_abs_diff(dinp_n, dinp_d, ni) < tol);
    assert_true(max_abs_diff(dw_n, dw_d, nw) < 1e-3);
    assert_true(max_abs_diff(db_n, db_d, d.OC) < 1e-3);
    /* overwrite mode ignores what the gradient buffer held */
    for (size_t i = 0; i < ni; i++) dx[i] = NAN;
    conv2d_dnnl_backward(fast, ws, dx, 0, NULL, NULL, R, x, w);
    if (cl) nhwc_to_nchw(dinp_d, 0, dinp_cl, d.B, d.C, d.H * d.W);
    assert_true(max_abs_diff(dinp_n, dinp_d, ni) < tol);
    conv2d_dnnl_free(fast);
    for (int s = 0; s < CONV_WS_COUNT; s++) free(ws[s]);
  }
  free(out_d), free(dinp_d), free(dw_d), free(db_d);
  free(inp_cl), free(R_cl), free(out_cl), free(dinp_cl);
}

static void check_conv(Conv2dDims d) {
  assert_true(conv2d_dims_finish(&d));
  Rng rng;
  rng_seed(&rng, 7 + d.KH * 13 + d.KW * 3 + d.SH + d.DH * 5 + d.groups * 31);
  const size_t ni = (size_t)d.B * d.C * d.H * d.W,
               nw = (size_t)d.OC * (d.C / d.groups) * d.KH * d.KW;
  const size_t no = (size_t)d.B * d.OC * d.OH * d.OW;
  const int threads = omp_get_max_threads();
  ConvCtx c = {.d = d};
  c.inp = malloc(4 * ni), c.w = malloc(4 * nw), c.b = malloc(4 * d.OC);
  c.out = malloc(4 * no), c.R = malloc(4 * no);
  c.scratch = malloc(4 * conv2d_scratch_floats(d) * threads);
  float *partial = malloc(4 * nw * threads);
  float *dinp = calloc(ni, 4), *dw = calloc(nw, 4), *db = calloc(d.OC, 4);
  fill_uniform(c.inp, ni, &rng, -1, 1);
  fill_uniform(c.w, nw, &rng, -1, 1);
  fill_uniform(c.b, d.OC, &rng, -1, 1);
  fill_uniform(c.R, no, &rng, -1, 1);
  conv_loss(&c);
  conv2d_backward(dinp, 1, dw, db, c.R, c.inp, c.w, d, c.scratch, partial);
  assert_true(gradcheck(conv_loss, &c, c.inp, dinp, NULL, ni, 1e-2f) < TOL_LINEAR);
  assert_true(gradcheck(conv_loss, &c, c.w, dw, NULL, nw, 1e-2f) < TOL_LINEAR);
  assert_true(gradcheck(conv_loss, &c, c.b, db, NULL, d.OC, 1e-2f) < TOL_LINEAR);

  /* the naive oracle agrees with the fast kernel */
  float *out_naive = malloc(4 * no), *dinp_n = calloc(ni, 4), *dw_n = calloc(nw, 4),
        *db_n = calloc(d.OC, 4);
  conv2d_forward_naive(out_naive, c.inp, c.w, c.b, d);
  conv_loss(&c);
  assert_true(max_abs_diff(out_naive, c.out, no) < 1e-4);
  conv2d_backward_naive(dinp_n, dw_n, db_n, c.R, c.inp, c.w, d);
  assert_true(max_abs_diff(dinp_n, dinp, ni) < 1e-4);
  assert_true(max_abs_diff(dw_n, dw, nw) < 1e-3);
  assert_true(max_abs_diff(db_n, db, d.OC) < 1e-3);

  check_conv_dnnl(d, c.inp, c.w, c.b, c.R, out_naive, dinp_n, dw_n, db_n);
  float *dinp_d = malloc(4 * ni);
  for (size_t i = 0; i < ni; i++) dinp_d[i] = NAN; /* and so does the im2col path's */
  conv2d_backward(dinp_d, 0, NULL, NULL, c.R, c.inp, c.w, d, c.scratch, partial);
  assert_true(max_abs_diff(dinp_n, dinp_d, ni) < 1e-4);
  free(dinp_d);

  /* 1 vs all threads: forward is per image, so bitwise equal */
  float *out1 = malloc(4 * no), *dw1 = calloc(nw, 4);
  omp_set_num_threads(1);
  conv2d_forward(out1, c.inp, c.w, c.b, d, c.scratch);
  conv2d_backward(NULL, 1, dw1, NULL, c.R, c.inp, c.w, d, c.scratch, partial);
  omp_set_num_threads(threads);
  conv_loss(&c);
  assert_memory_equal(out1, c.out, 4 * no);
  assert_true(max_abs_diff(dw1, dw, nw) < 1e-4);

  free(out1), free(dw1), free(out_naive), free(dinp_n), free(dw_n), free(db_n);
  free(c.inp), free(c.w), free(c.b), free(c.out), free(c.R), free(c.scratch), free(partial);
  free(dinp), free(dw), free(db);
}

/* check_conv_dnnl on random inputs, weights and output gradient, against the naive oracle
 * (no finite differences: for layers too large for them) */
static void check_conv_dnnl_random(Conv2dDims d, uint64_t seed) {
  const size_t ni = (size_t)d.B * d.C * d.H * d.W,
               nw = (size_t)d.OC * (d.C / d.groups) * d.KH * d.KW;
  const size_t no = (size_t)d.B * d.OC * d.OH * d.OW;
  Rng rng;
  rng_seed(&rng, seed);
  float *inp = malloc(4 * ni), *w = malloc(4 * nw), *b = malloc(4 * d.OC), *R = malloc(4 * no);
  float *out = malloc(4 * no), *dinp = calloc(ni, 4), *dw = calloc(nw, 4), *db = calloc(d.OC, 4);
  fill_uniform(inp, ni, &rng, -1, 1), fill_uniform(w, nw, &rng, -1, 1);
  fill_uniform(b, d.OC, &rng, -1, 1), fill_uniform(R, no, &rng, -1, 1);
  conv2d_forward_naive(out, inp, w, b, d);
  conv2d_backward_naive(dinp, dw, db, R, inp, w, d);
  check_conv_dnnl(d, inp, w, b, R, out, dinp, dw, db);
  free(inp), free(w), free(b), free(R), free(out), free(dinp), free(dw), free(db);
}

/* Pointwise convolutions, channels-last, run as matrix products (conv2d_dnnl.c): the forward
 * too when the weights are large (512 x 1024), and the weight gradient in slices when the rows
 * outnumber the channels 16 times (8 x 8 x 4 = 256 rows of 8 and 12 channels, with 2 threads
 * or more). Against the naive oracle, without finite differences (half a million weights). */
static void test_conv2d_pointwise(void **state) {
  (void)state;
  const Conv2dDims cases[] = {
      {.B = 2,
       .C = 512,
       .H = 1,
       .W = 3,
       .OC = 1024,
       .KH = 1,
       .KW = 1,
       .SH = 1,
       .SW = 1,
       .groups = 1},
      {.B = 4, .C = 8, .H = 8, .W = 8, .OC = 12, .KH = 1, .KW = 1, .SH = 1, .SW = 1, .groups = 1},
  };
  for (size_t k = 0; k < sizeof cases / sizeof *cases; k++) {
    Conv2dDims d = cases[k];
    assert_true(conv2d_dims_finish(&d));
    check_conv_dnnl_random(d, 40 + k);
  }
}

/* The largest |want - got| over a forward pass's output (NCHW), want being the oracle's out_n
 * (with bias b) less the bias if no_bias, plus R if sum, then max(0, .) if relu; a NaN in got
 * gives NaN, which fails any "< tolerance" */
static double forward_error(const float *got, const float *out_n, const float *b, const float *R,
                            Conv2dDims d, int no_bias, int sum, int relu) {
  const size_t OHW = (size_t)d.OH * d.OW;
  double worst = 0;
  for (int bb = 0; bb < d.B; bb++)
    for (int o = 0; o < d.OC; o++)
      for (size_t p = 0; p < OHW; p++) {
        const size_t i = ((size_t)bb * d.OC + o) * OHW + p;
        double want = out_n[i] - (no_bias ? b[o] : 0) + (sum ? R[i] : 0);
        if (relu && want < 0) want = 0;
        const double e = fabs(want - got[i]);
        if (isnan(e)) return NAN; /* left in got */
        if (e > worst) worst = e;
      }
  return worst;
}

/* A convolution's random case and the naive oracle's answers, for the hand-written kernels'
 * tests: input, weights, bias and an output gradient R uniform in [-1, 1] (NCHW, and the input
 * and R channels-last), the oracle's output (with the bias) and gradients for R. */
typedef struct {
  Conv2dDims d;
  size_t ni, nw, no;
  float *inp, *w, *b, *R, *inp_cl, *R_cl, *out_n, *dinp_n, *dw_n, *db_n;
} OracleCase;

static OracleCase oracle_case(Conv2dDims d, uint64_t seed) {
  OracleCase c = {.d = d};
  c.ni = (size_t)d.B * d.C * d.H * d.W, c.nw = (size_t)d.OC * (d.C / d.groups) * d.KH * d.KW;
  c.no = (size_t)d.B * d.OC * d.OH * d.OW;
  Rng rng;
  rng_seed(&rng, seed);
  c.inp = malloc(4 * c.ni), c.w = malloc(4 * c.nw), c.b = malloc(4 * d.OC);
  c.R = malloc(4 * c.no), c.inp_cl = malloc(4 * c.ni), c.R_cl = malloc(4 * c.no);
  c.out_n = malloc(4 * c.no), c.dinp_n = calloc(c.ni, 4), c.dw_n = calloc(c.nw, 4);
  c.db_n = calloc(d.OC, 4);
  fill_uniform(c.inp, c.ni, &rng, -1, 1), fill_uniform(c.w, c.nw, &rng, -1, 1);
  fill_uniform(c.b, d.OC, &rng, -1, 1), fill_uniform(c.R, c.no, &rng, -1, 1);
  nchw_to_nhwc(c.inp_cl, 0, c.inp, d.B, d.C, d.H * d.W);
  nchw_to_nhwc(c.R_cl, 0, c.R, d.B, d.OC, d.OH * d.OW);
  conv2d_forward_naive(c.out_n, c.inp, c.w, c.b, d);
  conv2d_backward_naive(c.dinp_n, c.dw_n, c.db_n, c.R, c.inp, c.w, d);
  return c;
}

static void oracle_case_free(OracleCase *c) {
  free(c->inp), free(c->w), free(c->b), free(c->R), free(c->inp_cl), free(c->R_cl);
  free(c->out_n), free(c->dinp_n), free(c->dw_n), free(c->db_n);
}

/* a kernel's forward over packed weights (conv2d_direct_forward and its kind) */
typedef void (*KernelForward)(float *out, const float *inp, const float *packed, const float *bias,
                              Conv2dDims d, int sum, int relu);

/* The largest error of fwd against the oracle over its three modes: bias; no bias; bias, the
 * sum (over R) and the ReLU. Unwritten outputs are NaN, which fails any "< tolerance". */
static double kernel_forward_error(KernelForward fwd, const float *packed, const OracleCase *c) {
  const Conv2dDims d = c->d;
  float *out_cl = malloc(4 * c->no), *out = malloc(4 * c->no);
  double worst = 0;
  for (int mode = 0; mode < 3; mode++) {
    for (size_t i = 0; i < c->no; i++) out_cl[i] = mode == 2 ? c->R_cl[i] : NAN;
    fwd(out_cl, c->inp_cl, packed, mode == 1 ? NULL : c->b, d, mode == 2, mode == 2);
    nhwc_to_nchw(out, 0, out_cl, d.B, d.OC, d.OH * d.OW);
    const double e = forward_error(out, c->out_n, c->b, c->R, d, mode == 1, mode == 2, mode == 2);
    if (!(e <= worst)) worst = e;
  }
  free(out_cl), free(out);
  return worst;
}

/* fwd on one thread and on all give the same bits */
static void check_kernel_thread_count(KernelForward fwd, const float *packed, const OracleCase *c) {
  const int threads = omp_get_max_threads();
  float *one = malloc(4 * c->no), *all = malloc(4 * c->no);
  omp_set_num_threads(1);
  fwd(one, c->inp_cl, packed, c->b, c->d, 0, 0);
  omp_set_num_threads(threads);
  fwd(all, c->inp_cl, packed, c->b, c->d, 0, 0);
  assert_memory_equal(one, all, 4 * c->no);
  free(one), free(all);
}

/* a kernel's input gradient (conv2d_direct_input_grad and its kind), its packing room given */
typedef void (*KernelInputGrad)(float *dinp, float *packed, const float *dout, const float *weight,
                                Conv2dDims d, int accumulate);

/* The largest error of grad against the oracle's input gradient, overwriting (what dinp held
 * was NaN) and accumulating (onto ones) */
static double kernel_input_grad_error(KernelInputGrad grad, float *packed, const OracleCase *c) {
  const Conv2dDims d = c->d;
  float *dx_cl = malloc(4 * c->ni), *dx = malloc(4 * c->ni);
  double worst = 0;
  for (int acc = 0; acc < 2; acc++) {
    for (size_t i = 0; i < c->ni; i++) dx_cl[i] = acc ? 1.0f : NAN;
    grad(dx_cl, packed, c->R_cl, c->w, d, acc);
    nhwc_to_nchw(dx, 0, dx_cl, d.B, d.C, d.H * d.W);
    for (size_t i = 0; acc && i < c->ni; i++) dx[i] -= 1.0f;
    const double e = max_abs_diff(c->dinp_n, dx, c->ni);
    if (!(e <= worst)) worst = e;
  }
  free(dx_cl), free(dx);
  return worst;
}

/* The direct 3x3 and 7x7 kernels (conv2d_direct.c) against the naive oracle, one case per strip
 * shape it has (pixels x vectors), with 16, 32 and other input channel counts (its three
 * pitches), strips at both edges and between them; forward with and without bias, with the sum
 * and the ReLU, the input gradient through the transposed weights, accumulating and not, and the
 * weight gradient in one slice and in three; at stride 1 and 2 (3x3); forward with the 2x2
 * max-pool after it, on even and odd maps. */
static void test_conv2d_direct(void **state) {
  (void)state;
  static const int shapes[][5] = {
      /* C, OC, W, stride, kernel side */
      {16, 16, 32, 1, 3},
      {32, 16, 28, 1, 3},
      {48, 32, 28, 1, 3},
      {16, 48, 8, 1, 3},
      {32, 64, 16, 1, 3},
      {16, 16, 7, 1, 3},
      {64, 32, 7, 1, 3},
      {16, 16, 12, 1, 3},
      {16, 32, 4, 1, 3},
      {32, 64, 4, 1, 3},
      {16, 16, 3, 1, 3},
      {16, 32, 3, 1, 3},
      {64, 128, 3, 1, 3},
      {16, 32, 28, 2, 3},
      {32, 64, 14, 2, 3},
      {16, 16, 32, 2, 3},
      {48, 64, 8, 2, 3},
      {32, 16, 6, 2, 3},
      {64, 128, 4, 1, 3},
      {64, 128, 7, 1, 3},
      {64, 128, 8, 2, 3},
      /* 7x7: every strip shape, strips between the edges, 32 and other channel counts */
      {32, 64, 28, 1, 7},
      {32, 32, 16, 1, 7},
      {16, 32, 7, 1, 7},
      {16, 32, 12, 1, 7},
      {16, 64, 12, 1, 7},
      {16, 32, 9, 1, 7},
      {16, 64, 6, 1, 7},
      {64, 128, 7, 1, 7},
      {48, 128, 8, 1, 7},
      {128, 256, 4, 1, 7},
      {64, 128, 3, 1, 7}};
  /* clang-format off */
  Conv2dDims probe = {.B = 1, .C = 16, .H = 4, .W = 4, .OC = 16, .KH = 3, .KW = 3, .SH = 1, .SW = 1,
                      .PT = 1, .PB = 1, .PL = 1, .PR = 1, .groups = 1};
  /* clang-format on */
  assert_true(conv2d_dims_finish(&probe));
  if (!conv2d_direct_supported(probe)) skip(); /* built without AVX-512 */
  int seen[8][17 * 4 + 4] = {{0}};             /* [side][pixels * 4 + vectors] */
  int pooled = 0;
  for (size_t k = 0; k < sizeof shapes / sizeof *shapes; k++) {
    Conv2dDims d = probe;
    /* weights of 256 KB and more go in strips of 2 or 3 images: whole strips and the rest */
    const int T = shapes[k][4];
    d.B = shapes[k][0] * shapes[k][1] * T * T >= 64 * 128 * 9 ? 5 : 2;
    d.C = shapes[k][0], d.OC = shapes[k][1], d.W = shapes[k][2];
    d.SH = d.SW = shapes[k][3];
    d.KH = d.KW = T, d.PT = d.PB = d.PL = d.PR = T / 2;
    /* rows with and without padding above and below; even at stride 2 */
    d.H = d.SH == 2 ? 4 + 2 * ((int)k % 2) : T == 3 ? 3 + (int)k % 3 : 5 + 2 * ((int)k % 2);
    assert_true(conv2d_dims_finish(&d));
    assert_true(conv2d_direct_supported(d));
    int P, K;
    assert_true(conv2d_direct_strip(d, &P, &K));
    seen[T][P * 4 + K] = 1;
    const double tolerance = T == 7 ? 5e-4 : 1e-4; /* sums of 49 taps x channels */
    /* the input gradient at stride 1, but for 7x7 ones into fewer than 32 channels */
    const int direct_t = d.SH == 1 && (T == 3 || d.C % 32 == 0);
    assert_int_equal(conv2d_direct_transposed_supported(d), direct_t);
    const size_t no = (size_t)d.B * d.OC * d.OH * d.OW, OHW = (size_t)d.OH * d.OW;
    OracleCase c = oracle_case(d, 90 + k);
    const float *out_n = c.out_n;
    float *out_cl = malloc(4 * no), *packed = malloc(4 * conv2d_direct_packed_floats(d));
    conv2d_direct_pack(packed, c.w, d);
    assert_true(kernel_forward_error(conv2d_direct_forward, packed, &c) < tolerance);
    if (conv2d_direct_pool2_supported(d)) /* against the oracle's map, with ReLU or not, pooled */
      for (int relu = 0; relu < 2; relu++) {
        const int PH = d.OH / 2, PW = d.OW / 2;
        for (size_t i = 0; i < no; i++) out_cl[i] = NAN;
        conv2d_direct_forward_pool2(out_cl, c.inp_cl, packed, c.b, d, relu);
        double worst = 0;
        for (int bb = 0; bb < d.B; bb++)
          for (int y = 0; y < PH; y++)
            for (int x = 0; x < PW; x++)
              for (int o = 0; o < d.OC; o++) {
                double want = -INFINITY;
                for (int k4 = 0; k4 < 4; k4++) {
                  const size_t p = (size_t)(2 * y + k4 / 2) * d.OW + 2 * x + k4 % 2;
                  const double v = out_n[((size_t)bb * d.OC + o) * OHW + p];
                  if (v > want) want = v;
                }
                if (relu && want < 0) want = 0;
                const double e = fabs(want - out_cl[(((size_t)bb * PH + y) * PW + x) * d.OC + o]);
                if (!(e <= worst)) worst = e;
              }
        assert_true(worst < tolerance);
        pooled++;
      }
    if (direct_t) {
      float *packed_t = malloc(4 * conv2d_direct_packed_floats(d));
      assert_true(kernel_input_grad_error(conv2d_direct_input_grad, packed_t, &c) < tolerance);
      free(packed_t);
    }
    if (conv2d_direct_wgrad_supported(d)) /* the weight gradient, accumulating, in 1 and 3 slices */
      for (int slices = 1; slices <= 3; slices += 2) {
        float *dw = malloc(4 * c.nw), *part = malloc(4 * conv2d_direct_wgrad_floats(d, slices));
        for (size_t i = 0; i < c.nw; i++) dw[i] = 1.0f;
        conv2d_direct_weight_grad(dw, part, c.R_cl, c.inp_cl, d, slices);
        for (size_t i = 0; i < c.nw; i++) dw[i] -= 1.0f;
        assert_true(max_abs_diff(c.dw_n, dw, c.nw) < 1e-3);
        free(dw), free(part);
      }
    oracle_case_free(&c);
    free(out_cl), free(packed);
  }
  /* and through conv2d_dnnl's interface: forward, and both gradients, channels-last; at stride
   * 2 the input gradient is oneDNN's */
  for (int stride = 1; stride <= 2; stride++) {
    Conv2dDims d = probe;
    d.B = 2, d.C = 16, d.OC = 32, d.H = 6, d.W = 8, d.SH = d.SW = stride;
    assert_true(conv2d_dims_finish(&d));
    check_conv_dnnl_random(d, 89);
  }
  Conv2dDims d7 = probe; /* 7x7 (all three passes direct) */
  d7.B = 2, d7.C = 32, d7.OC = 64, d7.H = 9, d7.W = 8, d7.KH = d7.KW = 7;
  d7.PT = d7.PB = d7.PL = d7.PR = 3;
  assert_true(conv2d_dims_finish(&d7));
  check_conv_dnnl_random(d7, 88);

  /* every strip shape was run */
  const int want[][3] = {{3, 16, 1}, {3, 14, 1}, {3, 14, 2}, {3, 8, 1},  {3, 8, 2},
                         {3, 7, 1},  {3, 7, 2},  {3, 4, 1},  {3, 4, 2},  {3, 4, 4},
                         {3, 3, 1},  {3, 3, 2},  {3, 3, 4},  {7, 14, 2}, {7, 8, 2},
                         {7, 7, 2},  {7, 4, 2},  {7, 4, 4},  {7, 3, 2},  {7, 3, 4}};
  for (size_t i = 0; i < sizeof want / sizeof *want; i++)
    assert_true(seen[want[i][0]][want[i][1] * 4 + want[i][2]]);
  assert_int_equal(pooled, 2 * (int)(sizeof shapes / sizeof *shapes)); /* every shape pools */
}

/* The narrow kernel (conv2d_narrow.c: 3x3 into 12 channels) against the naive oracle: 16 to
 * 64 input channels, one strip (both edges) to several, rows with and
 * without padding; with bias, without, and with the sum and the ReLU; bit-equal on one thread
 * and on all; and through conv2d_dnnl, whose backward passes stay oneDNN's. */
static void test_conv2d_narrow(void **state) {
  (void)state;
  /* C, OC, W, H */
  static const int shapes[][4] = {{48, 12, 8, 5}, {16, 12, 2, 3}, {64, 12, 6, 1}, {32, 12, 4, 4}};
  /* clang-format off */
  Conv2dDims probe = {.B = 3, .C = 16, .H = 4, .W = 4, .OC = 12, .KH = 3, .KW = 3, .SH = 1, .SW = 1,
                      .PT = 1, .PB = 1, .PL = 1, .PR = 1, .groups = 1};
  /* clang-format on */
  assert_true(conv2d_dims_finish(&probe));
  if (!conv2d_narrow_supported(probe)) skip(); /* built without AVX-512 */
  for (size_t k = 0; k < sizeof shapes / sizeof *shapes; k++) {
    Conv2dDims d = probe;
    d.C = shapes[k][0], d.OC = shapes[k][1], d.W = shapes[k][2], d.H = shapes[k][3];
    assert_true(conv2d_dims_finish(&d));
    assert_true(conv2d_narrow_supported(d));
    OracleCase c = oracle_case(d, 60 + k);
    float *packed = malloc(4 * conv2d_narrow_packed_floats(d));
    conv2d_narrow_pack(packed, c.w, d);
    assert_true(kernel_forward_error(conv2d_narrow_forward, packed, &c) < 1e-4);
    check_kernel_thread_count(conv2d_narrow_forward, packed, &c);
    check_conv_dnnl_random(d, 70 + k);
    oracle_case_free(&c);
    free(packed);
  }
  Conv2dDims odd = probe, other = probe; /* an even width, and 12 channels */
  odd.W = 7, other.OC = 24;
  assert_true(conv2d_dims_finish(&odd) && conv2d_dims_finish(&other));
  assert_false(conv2d_narrow_supported(odd) || conv2d_narrow_supported(other));
}

/* The depthwise kernel (conv2d_depthwise.c) against the naive oracle: every strip width it
 * has (8, 7, 4, 2 and 1 pixels) at stride 1 and 2, one strip per row (both edges) and several;
 * forward with bias, without, and with the sum and the ReLU; the input gradient at stride 1,
 * overwriting and accumulating; bit-equal on one thread and on all; and through conv2d_dnnl
 * (against the oracle there: its weight gradient and strided input gradient are oneDNN's). */
static void test_conv2d_depthwise(void **state) {
  (void)state;
  /* C, W, H, stride: output widths 16, 8, 24, 14, 4, 2, 3 at stride 1; 16, 7, 4, 2, 1, 3 at 2 */
  static const int shapes[][4] = {{32, 16, 3, 1}, {16, 8, 2, 1}, {16, 24, 2, 1}, {16, 14, 3, 1},
                                  {32, 4, 4, 1},  {16, 2, 2, 1}, {16, 3, 3, 1},  {16, 32, 4, 2},
                                  {16, 14, 2, 2}, {48, 8, 4, 2}, {16, 4, 4, 2},  {16, 2, 2, 2},
                                  {16, 6, 6, 2}};
  /* clang-format off */
  Conv2dDims probe = {.B = 2, .C = 16, .H = 4, .W = 4, .OC = 16, .KH = 3, .KW = 3, .SH = 1, .SW = 1,
                      .PT = 1, .PB = 1, .PL = 1, .PR = 1, .groups = 16};
  /* clang-format on */
  assert_true(conv2d_dims_finish(&probe));
  if (!conv2d_depthwise_supported(probe)) skip(); /* built without AVX-512 */
  for (size_t k = 0; k < sizeof shapes / sizeof *shapes; k++) {
    Conv2dDims d = probe;
    d.C = d.OC = d.groups = shapes[k][0], d.W = shapes[k][1], d.H = shapes[k][2];
    d.SH = d.SW = shapes[k][3];
    assert_true(conv2d_dims_finish(&d));
    assert_true(conv2d_depthwise_supported(d));
    OracleCase c = oracle_case(d, 90 + k);
    float *packed = malloc(4 * conv2d_depthwise_packed_floats(d));
    conv2d_depthwise_pack(packed, c.w, d);
    assert_true(kernel_forward_error(conv2d_depthwise_forward, packed, &c) < 1e-5);
    check_kernel_thread_count(conv2d_depthwise_forward, packed, &c);
    assert_int_equal(conv2d_depthwise_input_grad_supported(d), d.SH == 1);
    if (d.SH == 1)
      assert_true(kernel_input_grad_error(conv2d_depthwise_input_grad, packed, &c) < 1e-5);
    if (k % 4 == 0) check_conv_dnnl_random(d, 100 + k);
    oracle_case_free(&c);
    free(packed);
  }
  Conv2dDims grouped = probe, odd = probe, few = probe; /* groups < C; an odd map at stride 2 */
  grouped.groups = 8, odd.W = 7, odd.SH = odd.SW = 2, few.C = few.OC = few.groups = 8;
  assert_true(conv2d_dims_finish(&grouped) && conv2d_dims_finish(&odd) && conv2d_dims_finish(&few));
  assert_false(conv2d_depthwise_supported(grouped) || conv2d_depthwise_supported(odd) ||
               conv2d_depthwise_supported(few));
}

/* The depthwise-separable pass (conv2d_separable.c) against the naive oracle run layer by layer:
 * depthwise at stride 1 and 2, pointwise into one panel and several, tiles of one row and of
 * several with a strip's remainder, with and without each ReLU; the same output on 1 thread
 * and on 3, and from the pointwise product alone. */
static void test_conv2d_separable(void **state) {
  (void)state;
  /* C, OC, H, W, stride */
  static const int shapes[][5] = {
      {16, 32, 8, 8, 1}, {32, 64, 6, 6, 2}, {48, 96, 5, 7, 1}, {16, 128, 2, 2, 2}};
  for (size_t k = 0; k < sizeof shapes / sizeof *shapes; k++) {
    /* clang-format off */
    Conv2dDims dw = {.B = 3, .C = shapes[k][0], .H = shapes[k][2], .W = shapes[k][3],
                     .OC = shapes[k][0], .KH = 3, .KW = 3, .SH = shapes[k][4], .SW = shapes[k][4],
                     .PT = 1, .PB = 1, .PL = 1, .PR = 1, .groups = shapes[k][0]};
    /* clang-format on */
    assert_true(conv2d_dims_finish(&dw));
    Conv2dDims pw = {.B = 3,
                     .C = dw.OC,
                     .H = dw.OH,
                     .W = dw.OW,
                     .OC = shapes[k][1],
                     .KH = 1,
                     .KW = 1,
                     .SH = 1,
                     .SW = 1,
                     .groups = 1};
    assert_true(conv2d_dims_finish(&pw));
    if (!conv2d_separable_supported(dw, pw)) skip(); /* built without AVX-512 */
    const size_t ni = (size_t)dw.B * dw.C * dw.H * dw.W, nm = (size_t)pw.B * pw.C * pw.H * pw.W;
    const size_t no = (size_t)pw.B * pw.OC * pw.H * pw.W, HW = (size_t)pw.H * pw.W;
    Rng rng;
    rng_seed(&rng, 120 + k);
    float *inp = malloc(4 * ni), *wd = malloc(4 * 9 * dw.C), *bd = malloc(4 * dw.C);
    float *wp = malloc(4 * (size_t)pw.C * pw.OC), *bp = malloc(4 * pw.OC);
    float *mid = malloc(4 * nm), *want = malloc(4 * no), *inp_cl = malloc(4 * ni);
    float *mid_cl = malloc(4 * nm), *got_cl = malloc(4 * no), *got = malloc(4 * no);
    float *alone_cl = malloc(4 * no), *one_cl = malloc(4 * no);
    float *pd = malloc(4 * conv2d_depthwise_packed_floats(dw));
    float *pp = malloc(4 * conv2d_pointwise_panels_floats(pw));
    float *scratch = malloc(4 * conv2d_separable_scratch_floats(dw, 3));
    fill_uniform(inp, ni, &rng, -1, 1), fill_uniform(wd, 9 * dw.C, &rng, -1, 1);
    fill_uniform(bd, dw.C, &rng, -1, 1), fill_uniform(wp, (size_t)pw.C * pw.OC, &rng, -0.5, 0.5);
    fill_uniform(bp, pw.OC, &rng, -1, 1);
    nchw_to_nhwc(inp_cl, 0, inp, dw.B, dw.C, dw.H * dw.W);
    conv2d_depthwise_pack(pd, wd, dw), conv2d_pointwise_panels_pack(pp, wp, pw);
    for (int relus = 0; relus < 4; relus++) {
      const int dw_relu = relus & 1, pw_relu = relus >> 1;
      conv2d_forward_naive(mid, inp, wd, bd, dw);
      for (size_t i = 0; dw_relu && i < nm; i++) mid[i] = mid[i] > 0 ? mid[i] : 0;
      conv2d_forward_naive(want, mid, wp, bp, pw);
      for (size_t i = 0; pw_relu && i < no; i++) want[i] = want[i] > 0 ? want[i] : 0;
      for (size_t i = 0; i < no; i++) got_cl[i] = one_cl[i] = alone_cl[i] = NAN;
      conv2d_separable_forward(got_cl, scratch, inp_cl, pd, bd, dw_relu, dw, pp, bp, pw_relu, pw,
                               3);
      nhwc_to_nchw(got, 0, got_cl, pw.B, pw.OC, (int)HW);
      assert_true(max_abs_diff(want, got, no) < 1e-4);
      conv2d_separable_forward(one_cl, scratch, inp_cl, pd, bd, dw_relu, dw, pp, bp, pw_relu, pw,
                               1);
      assert_memory_equal(one_cl, got_cl, 4 * no);
      nchw_to_nhwc(mid_cl, 0, mid, pw.B, pw.C, (int)HW);
      conv2d_pointwise_panels_forward(alone_cl, mid_cl, pp, bp, pw, pw_relu);
      nhwc_to_nchw(got, 0, alone_cl, pw.B, pw.OC, (int)HW);
      assert_true(max_abs_diff(want, got, no) < 1e-4);
    }
    free(inp), free(wd), free(bd), free(wp), free(bp), free(mid), free(want), free(inp_cl);
    free(mid_cl), free(got_cl), free(got), free(alone_cl), free(one_cl), free(pd), free(pp);
    free(scratch);
  }
}

/* Inference's folded convolution (conv2d_dnnl_enable_folded) against the naive oracle, with
 * and without the ReLU and the residual sum, on kept weights and on a call's own: a pointwise
 * layer with few rows (a matrix product on transposed weights), one with many (oneDNN's
 * primitive), and 3x3 ones of 32 and 12 outputs (the direct and the narrow kernels where the
 * CPU has them). */
static void test_conv2d_folded(void **state) {
  (void)state;
  /* C, OC, H = W, KH = KW, products */
  static const int cases[][5] = {{64, 128, 2, 1, 1},
                                 {64, 48, 1, 1, 1},
                                 {32, 64, 8, 1, 0},
                                 {16, 32, 6, 3, 0},
                                 {32, 12, 4, 3, 0}};
  for (size_t k = 0; k < sizeof cases / sizeof *cases; k++) {
    const int T = cases[k][3];
    Conv2dDims d = {.B = 2,
                    .C = cases[k][0],
                    .H = cases[k][2],
                    .W = cases[k][2],
                    .OC = cases[k][1],
                    .KH = T,
                    .KW = T,
                    .SH = 1,
                    .SW = 1,
                    .PT = T / 2,
                    .PB = T / 2,
                    .PL = T / 2,
                    .PR = T / 2,
                    .groups = 1};
    assert_true(conv2d_dims_finish(&d));
    const size_t ni = (size_t)d.B * d.C * d.H * d.W, nw = (size_t)d.OC * d.C * T * T;
    const size_t no = (size_t)d.B * d.OC * d.OH * d.OW, HW = (size_t)d.H * d.W;
    Rng rng;
    rng_seed(&rng, 120 + k);
    float *inp = malloc(4 * ni), *w = malloc(4 * nw), *b = malloc(4 * d.OC), *R = malloc(4 * no);
    float *out_n = malloc(4 * no), *inp_cl = malloc(4 * ni), *out_cl = malloc(4 * no);
    float *out = malloc(4 * no);
    fill_uniform(inp, ni, &rng, -1, 1), fill_uniform(w, nw, &rng, -1, 1);
    fill_uniform(b, d.OC, &rng, -1, 1), fill_uniform(R, no, &rng, -1, 1);
    nchw_to_nhwc(inp_cl, 0, inp, d.B, d.C, (int)HW);
    conv2d_forward_naive(out_n, inp, w, b, d);
    for (int mode = 0; mode < 4; mode++) {
      const int relu = mode & 1, sum = mode >> 1;
      ConvDnnl *c = conv2d_dnnl_create(d, 1, 1);
      assert_non_null(c);
      assert_true(conv2d_dnnl_enable_folded(c, relu, sum));
      assert_int_equal(conv2d_dnnl_folded_by_product(c), cases[k][4]);
      void *ws[CONV_WS_COUNT];
      for (int s = 0; s < CONV_WS_COUNT; s++)
        ws[s] = aligned_alloc(64, (conv2d_dnnl_workspace_bytes(c, s) + 63) / 64 * 64 + 64);
      assert_true(conv2d_dnnl_set_folded(c, w, b, 1));
      for (int own = 0; own < 2; own++) { /* kept weights; this call's */
        nchw_to_nhwc(out_cl, 0, R, d.B, d.OC, (int)HW);
        if (!sum)
          for (size_t i = 0; i < no; i++) out_cl[i] = NAN;
        conv2d_dnnl_forward_folded(c, ws, out_cl, inp_cl, own ? w : NULL, own ? b : NULL, 0);
        nhwc_to_nchw(out, 0, out_cl, d.B, d.OC, (int)HW);
        assert_true(forward_error(out, out_n, b, R, d, 0, sum, relu) < 1e-4);
      }
      for (int s = 0; s < CONV_WS_COUNT; s++) free(ws[s]);
      conv2d_dnnl_free(c);
    }
    free(inp), free(w), free(b), free(R), free(out_n), free(inp_cl), free(out_cl), free(out);
  }
}

static void test_conv2d(void **state) {
  (void)state;
  /* one case a line */
  /* clang-format off */
  const Conv2dDims cases[] = {
      {.B = 2, .C = 3, .H = 7, .W = 6, .OC = 4, .KH = 3, .KW = 3, .SH = 1, .SW = 1, .PT = 1, .PB = 1, .PL = 1, .PR = 1, .groups = 1},
      {.B = 3, .C = 4, .H = 5, .W = 5, .OC = 6, .KH = 1, .KW = 1, .SH = 1, .SW = 1, .PT = 0, .PB = 0, .PL = 0, .PR = 0, .groups = 1},
      {.B = 2, .C = 2, .H = 9, .W = 8, .OC = 3, .KH = 5, .KW = 5, .SH = 2, .SW = 2, .PT = 2, .PB = 2, .PL = 2, .PR = 2, .groups = 1},
      {.B = 2, .C = 6, .H = 6, .W = 6, .OC = 9, .KH = 3, .KW = 3, .SH = 1, .SW = 1, .PT = 1, .PB = 1, .PL = 1, .PR = 1, .groups = 3},
      {.B = 2, .C = 4, .H = 6, .W = 7, .OC = 4, .KH = 3, .KW = 3, .SH = 2, .SW = 2, .PT = 1, .PB = 1, .PL = 1, .PR = 1, .groups = 4},
      {.B = 2, .C = 1, .H = 9, .W = 9, .OC = 3, .KH = 7, .KW = 7, .SH = 2, .SW = 2, .PT = 3, .PB = 3, .PL = 3, .PR = 3, .groups = 1},
      {.B = 3, .C = 2, .H = 8, .W = 8, .OC = 2, .KH = 3, .KW = 3, .SH = 2, .SW = 2, .PT = 0, .PB = 0, .PL = 0, .PR = 0, .groups = 1},
      {.B = 2, .C = 3, .H = 6, .W = 6, .OC = 5, .KH = 1, .KW = 1, .SH = 2, .SW = 2, .PT = 0, .PB = 0, .PL = 0, .PR = 0, .groups = 1},
      /* rectangular, asymmetric padding, dilation, depthwise */
      {.B = 2, .C = 2, .H = 8, .W = 9, .OC = 3, .KH = 3, .KW = 2, .SH = 2, .SW = 1, .PT = 1, .PB = 0, .PL = 0, .PR = 1, .groups = 1},
      {.B = 2, .C = 3, .H = 9, .W = 8, .OC = 2, .KH = 3, .KW = 3, .SH = 1, .SW = 1, .PT = 2, .PB = 2, .PL = 2, .PR = 2, .DH = 2, .DW = 2, .groups = 1},
      {.B = 2, .C = 4, .H = 7, .W = 7, .OC = 4, .KH = 3, .KW = 3, .SH = 1, .SW = 2, .PT = 1, .PB = 1, .PL = 1, .PR = 1, .DH = 1, .DW = 2, .groups = 4},
      /* kernels larger than their maps: taps that only meet padding are cut (7x7 -> 3x3;
       * 7x7 -> 5x5, which still runs blocked; 3x3 -> 1x1 on 16 aliased channels; one axis
       * only; a dilated kernel down to its middle tap) */
      {.B = 2, .C = 32, .H = 2, .W = 2, .OC = 32, .KH = 7, .KW = 7, .SH = 1, .SW = 1, .PT = 3, .PB = 3, .PL = 3, .PR = 3, .groups = 1},
      {.B = 2, .C = 32, .H = 3, .W = 3, .OC = 32, .KH = 7, .KW = 7, .SH = 1, .SW = 1, .PT = 3, .PB = 3, .PL = 3, .PR = 3, .groups = 1},
      {.B = 2, .C = 16, .H = 1, .W = 1, .OC = 16, .KH = 3, .KW = 3, .SH = 1, .SW = 1, .PT = 1, .PB = 1, .PL = 1, .PR = 1, .groups = 1},
      {.B = 2, .C = 5, .H = 2, .W = 6, .OC = 7, .KH = 7, .KW = 3, .SH = 1, .SW = 2, .PT = 3, .PB = 3, .PL = 1, .PR = 1, .groups = 1},
      {.B = 2, .C = 4, .H = 2, .W = 2, .OC = 4, .KH = 3, .KW = 3, .SH = 1, .SW = 1, .PT = 2, .PB = 2, .PL = 2, .PR = 2, .DH = 2, .DW = 2, .groups = 2},
  };
  /* clang-format on */
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) check_conv(cases[i]);
  /* multiply-adds off the padding: a 3x3 kernel over a padded 3x3 image meets it 7 times
   * per axis (2 + 3 + 2), 49 of 81; unpadded, every tap counts */
  Conv2dDims padded = {.B = 2,
                       .C = 4,
                       .H = 3,
                       .W = 3,
                       .OC = 5,
                       .KH = 3,
                       .KW = 3,
                       .PT = 1,
                       .PB = 1,
                       .PL = 1,
                       .PR = 1,
                       .groups = 2};
  assert_true(conv2d_dims_finish(&padded));
  assert_true(conv2d_macs_inside(padded) == 2.0 * 5 * 2 * 49);
  Conv2dDims valid = {
      .B = 1, .C = 3, .H = 6, .W = 5, .OC = 2, .KH = 3, .KW = 2, .SH = 2, .groups = 1};
  assert_true(conv2d_dims_finish(&valid));
  assert_true(conv2d_macs_inside(valid) == 2.0 * 3 * valid.OH * valid.OW * 3 * 2);
}

/* conv2d_few (+ ReLU, + 2x2 max-pool) against the naive convolution, then max(0, .) and the
 * first of equal maxima per window: odd sizes, widths past a strip of 8, stride 2 with 3
 * channels (the strided loop), padding and none */
static void check_conv_few(int C, int H, int W, int stride, int pad, int pool2) {
  Conv2dDims d = {.B = 3, .C = C, .H = H, .W = W, .OC = 32, .KH = 3, .KW = 3, .groups = 1};
  d.SH = d.SW = stride;
  d.PT = d.PB = d.PL = d.PR = pad;
  assert_true(conv2d_dims_finish(&d) && conv2d_few_supported(d));
  Rng rng;
  rng_seed(&rng, 70 + C + H);
  const size_t ni = (size_t)d.B * C * H * W, nc = (size_t)d.B * d.OC * d.OH * d.OW;
  const int oh = pool2 ? d.OH / 2 : d.OH, ow = pool2 ? d.OW / 2 : d.OW;
  const size_t no = (size_t)d.B * d.OC * oh * ow;
  float *x = malloc(4 * ni), *xl = malloc(4 * ni), *conv = malloc(4 * nc), *ref = malloc(4 * no);
  float *out = malloc(4 * no), *back = malloc(4 * no), w[32 * 27], bias[32];
  float *scratch = malloc(sizeof(float) * conv2d_few_scratch_floats(d));
  fill_uniform(x, ni, &rng, -1, 1);
  fill_uniform(w, (size_t)32 * C * 9, &rng, -0.5f, 0.5f);
  fill_uniform(bias, 32, &rng, -0.2f, 0.2f);
  conv2d_forward_naive(conv, x, w, bias, d);
  for (int b = 0; b < d.B; b++)
    for (int c = 0; c < d.OC; c++)
      for (int r = 0; r < oh; r++)
        for (int q = 0; q < ow; q++) {
          const float *plane = conv + ((size_t)b * d.OC + c) * d.OH * d.OW;
          float m = pool2 ? plane[2 * r * d.OW + 2 * q] : plane[r * d.OW + q];
          for (int k = 1; pool2 && k < 4; k++) {
            const float v = plane[(2 * r + k / 2) * d.OW + 2 * q + k % 2];
            m = v > m ? v : m;
          }
          ref[(((size_t)b * d.OC + c) * oh + r) * ow + q] = m > 0.0f ? m : 0.0f;
        }
  nchw_to_nhwc(xl, 0, x, d.B, C, H * W);
  conv2d_few_forward_nhwc(out, scratch, xl, w, bias, d, 1, pool2);
  nhwc_to_nchw(back, 0, out, d.B, d.OC, oh * ow);
  assert_true(max_abs_diff(back, ref, no) < 1e-5);
  free(x), free(xl), free(conv), free(ref), free(out), free(back), free(scratch);
}

static void test_conv_few(void **state) {
  (void)state;
  check_conv_few(1, 28, 28, 1, 1, 1);
  check_conv_few(1, 9, 21, 1, 0, 1);
  check_conv_few(3, 13, 11, 2, 1, 0);
  check_conv_few(3, 17, 19, 1, 1, 1);
}

/* ---- batchnorm ------------------------------------------------------------- */

typedef struct {
  BatchNormDims d;
  Mode mode;
  int relu;
  float *inp, *gamma, *beta, *rm, *rv, *out, *R, *mean, *invstd;
  int64_t nbt;
} BnCtx;

static double bn_loss(void *p) {
  BnCtx *c = p;
  batchnorm2d_forward(c->out, c->mean, c->invstd, c->inp, c->gamma, c->beta, c->rm, c->rv, &c->nbt,
                      c->d, c->mode, c->relu);
  return dot_double(c->out, c->R, (size_t)c->d.B * c->d.C * c->d.H * c->d.W);
}

static void check_bn(Mode mode, int relu) {
  Rng rng;
  rng_seed(&rng, 11 + mode);
  BnCtx c = {.d = {.B = 3, .C = 4, .H = 3, .W = 2, .eps = 1e-5f, .momentum = 0.1f},
             .mode = mode,
             .relu = relu};
  const size_t n = 3 * 4 * 3 * 2;
  c.inp = malloc(4 * n), c.out = malloc(4 * n), c.R = malloc(4 * n);
  c.gamma = malloc(16), c.beta = malloc(16), c.rm = malloc(16), c.rv = malloc(16);
  c.mean = malloc(16), c.invstd = malloc(16);
  fill_uniform(c.inp, n, &rng, -2, 2);
  fill_uniform(c.R, n, &rng, -1, 1);
  fill_uniform(c.gamma, 4, &rng, 0.5f, 1.5f);
  fill_uniform(c.beta, 4, &rng, -1, 1);
  fill_uniform(c.rm, 4, &rng, -0.5f, 0.5f);
  fill_uniform(c.rv, 4, &rng, 0.5f, 2.0f);
  float *dinp = calloc(n, 4), *dg = calloc(4, 4), *dbeta = calloc(4, 4);
  bn_loss(&c);
  batchnorm2d_backward(dinp, 1, dg, dbeta, c.R, c.inp, c.gamma, c.beta, c.mean, c.invstd, c.d, mode,
                       relu);
  /* with the fused ReLU a step may straddle its kink: smaller steps too */
  const int steps = relu ? 3 : 1;
  assert_true(gradcheck_steps(bn_loss, &c, c.inp, dinp, NULL, n, 1e-3f, steps) < TOL_SMOOTH);
  assert_true(gradcheck_steps(bn_loss, &c, c.gamma, dg, NULL, 4, 1e-3f, steps) < TOL_SMOOTH);
  assert_true(gradcheck_steps(bn_loss, &c, c.beta, dbeta, NULL, 4, 1e-3f, steps) < TOL_SMOOTH);
  free(c.inp), free(c.out), free(c.R), free(c.gamma), free(c.beta), free(c.rm), free(c.rv);
  free(c.mean), free(c.invstd), free(dinp), free(dg), free(dbeta);
}

static void test_batchnorm_train(void **state) {
  (void)state;
  check_bn(MODE_TRAIN, 0);
  check_bn(MODE_TRAIN, 1);
}

static void test_batchnorm_eval(void **state) {
  (void)state;
  check_bn(MODE_EVAL, 0);
  check_bn(MODE_EVAL, 1);
}

/* The fused ReLU's backward mask is recomputed from the input: it must pass a gradient exactly
 * where forward's output is positive, also for inputs a float step from the kink or on it. Eval
 * mode, where dx = k * dy, so dx != 0 says the mask passed. Both layouts, C = 16 (the unrolled
 * channel loop), C = 5 and C = 36 (periods of 80 and 144 values, and rows past them). */
static void check_bn_relu_mask(int nhwc, int C) {
  Rng rng;
  rng_seed(&rng, 31 + C);
  BatchNormDims d = {.B = 2, .C = C, .H = 5, .W = 7, .eps = 1e-5f, .momentum = 0.1f};
  const size_t n = (size_t)d.B * C * d.H * d.W;
  float *x = malloc(4 * n), *y = malloc(4 * n), *dy = malloc(4 * n), *dx = malloc(4 * n);
  float gamma[36], beta[36], rm[36], rv[36], mean[36], invstd[36];
  fill_uniform(gamma, (size_t)C, &rng, 0.3f, 2.0f);
  fill_uniform(beta, (size_t)C, &rng, -1, 1);
  fill_uniform(rm, (size_t)C, &rng, -0.5f, 0.5f);
  fill_uniform(rv, (size_t)C, &rng, 0.2f, 3.0f);
  beta[0] = rm[0] = 0.0f; /* channel 0's output is exactly 0 at x = 0 */
  for (size_t i = 0; i < n; i++) {
    const int c = nhwc ? (int)(i % (size_t)C) : (int)(i / (size_t)(d.H * d.W) % (size_t)C);
    const float scale = gamma[c] / sqrtf(rv[c] + d.eps), shift = beta[c] - rm[c] * scale;
    float v = -shift / scale; /* near the kink, then a few float steps either side */
    for (int k = (int)(i % 7) - 3; k != 0; k += k < 0 ? 1 : -1) v = nextafterf(v, k < 0 ? -10 : 10);
    x[i] = c == 0 && i % 3 == 0 ? 0.0f : v;
    dy[i] = 1.0f;
  }
  void *scratch = malloc(batchnorm2d_nhwc_scratch_bytes(C));
  if (nhwc) {
    batchnorm2d_forward_nhwc(y, mean, invstd, x, gamma, beta, rm, rv, NULL, d, MODE_EVAL, 1,
                             scratch);
    batchnorm2d_backward_nhwc(dx, 0, NULL, NULL, dy, x, gamma, beta, mean, invstd, d, MODE_EVAL, 1,
                              scratch);
  } else {
    batchnorm2d_forward(y, mean, invstd, x, gamma, beta, rm, rv, NULL, d, MODE_EVAL, 1);
    batchnorm2d_backward(dx, 0, NULL, NULL, dy, x, gamma, beta, mean, invstd, d, MODE_EVAL, 1);
  }
  size_t passed = 0, mismatched = 0;
  for (size_t i = 0; i < n; i++)
    passed += y[i] > 0.0f, mismatched += (y[i] > 0.0f) != (dx[i] != 0.0f);
  assert_int_equal(mismatched, 0);
  assert_true(passed > n / 4 && passed < 3 * n / 4); /* the inputs straddle the kink */
  free(x), free(y), free(dy), free(dx), free(scratch);
}

static void test_batchnorm_relu_mask(void **state) {
  (void)state;
  for (int nhwc = 0; nhwc < 2; nhwc++)
    check_bn_relu_mask(nhwc, 16), check_bn_relu_mask(nhwc, 5), check_bn_relu_mask(nhwc, 36);
}

/* Batchnorm with its ReLU and the 2x2 max-pool after it in one kernel (d.pool2) against
 * batchnorm, then maxpool2d with its argmax: the pooled map bit for bit, the input gradient
 * and parameter gradients to rounding (sums in another order), accumulating too. x takes few
 * values, so windows hold equal maxima (the first must win) and ReLU-clipped zeros. */
static void check_bn_pool2(Mode mode, int C) {
  BatchNormDims d = {.B = 3, .C = C, .H = 6, .W = 4, .eps = 1e-5f, .momentum = 0.1f};
  PoolDims p = {
      .B = d.B, .C = C, .H = d.H, .W = d.W, .KH = 2, .KW = 2, .SH = 2, .SW = 2, .DH = 1, .DW = 1};
  assert_true(pool_dims_finish(&p) && batchnorm2d_pool2_supported(C, d.H, d.W));
  const size_t n = (size_t)d.B * d.H * d.W * C, np = n / 4;
  Rng rng;
  rng_seed(&rng, 77 + C);
  float *x = malloc(4 * n), *y = malloc(4 * n), *dy = malloc(4 * n), *dx = malloc(4 * n);
  float *dx2 = malloc(4 * n), *pooled = malloc(4 * np), *pooled2 = malloc(4 * np);
  float *dp = malloc(4 * np), gamma[C], beta[C], rm[C], rv[C], mean[C], invstd[C];
  float dg[2][C], db[2][C];
  int32_t *argmax = malloc(4 * np);
  for (size_t i = 0; i < n; i++)
    x[i] = (float)(rng_uniform(&rng) < 0.5 ? 1 : (int)(4 * rng_uniform(&rng))) - 1.5f;
  fill_uniform(dp, np, &rng, -1, 1);
  for (int c = 0; c < C; c++) {
    gamma[c] = c % 3 ? 1.0f + 0.1f * c : -0.5f, beta[c] = 0.05f * (c % 5) - 0.1f;
    rm[c] = 0.1f, rv[c] = 2.0f, dg[0][c] = dg[1][c] = db[0][c] = db[1][c] = 0.0f;
  }
  void *scratch = malloc(batchnorm2d_nhwc_scratch_bytes(C));
  /* apart */
  batchnorm2d_forward_nhwc(y, mean, invstd, x, gamma, beta, rm, rv, NULL, d, mode, 1, scratch);
  maxpool2d_forward_nhwc(pooled, argmax, y, p);
  maxpool2d_backward_nhwc(dy, 0, dp, argmax, p);
  for (size_t i = 0; i < n; i++) dx[i] = 0.5f;
  batchnorm2d_backward_nhwc(dx, 1, dg[0], db[0], dy, x, gamma, beta, mean, invstd, d, mode, 1,
                            scratch);
  /* fused */
  d.pool2 = 1;
  batchnorm2d_forward_nhwc(pooled2, mean, invstd, x, gamma, beta, rm, rv, NULL, d, mode, 1,
                           scratch);
  assert_memory_equal(pooled, pooled2, 4 * np);
  for (size_t i = 0; i < n; i++) dx2[i] = 0.5f;
  batchnorm2d_backward_nhwc(dx2, 1, dg[1], db[1], dp, x, gamma, beta, mean, invstd, d, mode, 1,
                            scratch);
  double most = 0.0;
  for (size_t i = 0; i < n; i++) most = fmax(most, fabs(dx[i]));
  assert_true(most > 0.5);
  assert_true(max_abs_diff(dx, dx2, n) < 1e-5 * most);
  assert_true(max_abs_diff(dg[0], dg[1], C) < 1e-4 && max_abs_diff(db[0], db[1], C) < 1e-4);
  /* overwriting: what dx held does not matter */
  for (size_t i = 0; i < n; i++) dx2[i] = NAN;
  batchnorm2d_backward_nhwc(dx2, 0, NULL, NULL, dp, x, gamma, beta, mean, invstd, d, mode, 1,
                            scratch);
  for (size_t i = 0; i < n; i++) dx2[i] += 0.5f;
  assert_true(max_abs_diff(dx, dx2, n) < 1e-5 * most);
  free(x), free(y), free(dy), free(dx), free(dx2), free(pooled), free(pooled2), free(dp);
  free(argmax), free(scratch);
}

static void test_batchnorm_pool2(void **state) {
  (void)state;
  for (int mode = 0; mode < 2; mode++)
    check_bn_pool2(mode ? MODE_TRAIN : MODE_EVAL, 16),
        check_bn_pool2(mode ? MODE_TRAIN : MODE_EVAL, 48);
  assert_false(batchnorm2d_pool2_supported(36, 4, 4));
  assert_false(batchnorm2d_pool2_supported(16, 5, 4));
}

/* Eval-mode batchnorm over a concatenation read where its inputs are, against concatenating
 * and then normalising: inputs of whole vectors, parts of one, and more than one; with the ReLU
 * and without; the same floats. */
static void test_batchnorm_eval_concat(void **state) {
  (void)state;
  enum { N = 6 };
  const int C[N] = {24, 12, 12, 5, 16, 33};
  int total = 0;
  for (int i = 0; i < N; i++) total += C[i];
  BatchNormDims d = {.B = 3, .C = total, .H = 5, .W = 7, .eps = 1e-5f};
  const size_t rows = (size_t)d.B * d.H * d.W, n = rows * total;
  Rng rng;
  rng_seed(&rng, 61);
  float *in[N], *cat = malloc(4 * n), *want = malloc(4 * n), *got = malloc(4 * n);
  for (int i = 0; i < N; i++)
    in[i] = malloc(4 * rows * C[i]), fill_uniform(in[i], rows * C[i], &rng, -2, 2);
  float *gamma = malloc(4 * total), *beta = malloc(4 * total), *rm = malloc(4 * total);
  float *rv = malloc(4 * total), *mean = malloc(4 * total), *invstd = malloc(4 * total);
  fill_uniform(gamma, total, &rng, 0.5f, 1.5f), fill_uniform(beta, total, &rng, -1, 1);
  fill_uniform(rm, total, &rng, -0.5f, 0.5f), fill_uniform(rv, total, &rng, 0.5f, 2.0f);
  void *scratch = malloc(batchnorm2d_nhwc_scratch_bytes(total));
  concat_forward(cat, (const float *const *)in, C, N, d.B, d.H * d.W, 1);
  for (int relu = 0; relu < 2; relu++) {
    batchnorm2d_forward_nhwc(want, mean, invstd, cat, gamma, beta, rm, rv, NULL, d, MODE_EVAL, relu,
                             scratch);
    for (size_t i = 0; i < n; i++) got[i] = NAN;
    batchnorm2d_eval_concat_nhwc(got, mean, invstd, (const float *const *)in, C, N, gamma, beta, rm,
                                 rv, d, relu, scratch);
    assert_memory_equal(got, want, 4 * n);
  }
  for (int i = 0; i < N; i++) free(in[i]);
  free(cat), free(want), free(got), free(gamma), free(beta), free(rm), free(rv), free(mean);
  free(invstd), free(scratch);
}

static void test_batchnorm_running_stats(void **state) {
  (void)state;
  /* PyTorch: running_var takes the unbiased batch variance, momentum 0.1 */
  float x[4] = {1, 2, 3, 6}, out[4], mean, invstd, g = 1, b = 0, rm = 0, rv = 1;
  int64_t nbt = 0;
  BatchNormDims d = {.B = 4, .C = 1, .H = 1, .W = 1, .eps = 1e-5f, .momentum = 0.1f};
  batchnorm2d_forward(out, &mean, &invstd, x, &g, &b, &rm, &rv, &nbt, d, MODE_TRAIN, 0);
  assert_float_equal(mean, 3.0f, 1e-6);
  assert_float_equal(rm, 0.3f, 1e-6);
  assert_float_equal(rv, 0.9f + 0.1f * (14.0f / 3.0f), 1e-5);
  assert_int_equal(nbt, 1);
  assert_float_equal(invstd, 1.0f / sqrtf(3.5f + 1e-5f), 1e-6);
}

/* A batch shared by two processes (BatchShare), played by two threads that meet at a barrier:
 * each half-batch's forward and backward, in both layouts, gives what the whole batch gives,
 * and the running statistics stay the same on both. */
typedef struct {
  TestPairSide pair;
  BatchShare share;
  int nhwc, relu;
  BatchNormDims d;
  const float *inp, *dout, *gamma, *beta;
  float *out, *dinp, *mean, *invstd, *rm, *rv, *dgamma, *dbeta;
  void *scratch;
  int64_t nbt;
} SharedSide;

static void bn_side_run(SharedSide *s) {
  if (s->nhwc) {
    batchnorm2d_forward_nhwc(s->out, s->mean, s->invstd, s->inp, s->gamma, s->beta, s->rm, s->rv,
                             &s->nbt, s->d, MODE_TRAIN, s->relu, s->scratch);
    batchnorm2d_backward_nhwc(s->dinp, 0, s->dgamma, s->dbeta, s->dout, s->inp, s->gamma, s->beta,
                              s->mean, s->invstd, s->d, MODE_TRAIN, s->relu, s->scratch);
  } else {
    batchnorm2d_forward(s->out, s->mean, s->invstd, s->inp, s->gamma, s->beta, s->rm, s->rv,
                        &s->nbt, s->d, MODE_TRAIN, s->relu);
    batchnorm2d_backward(s->dinp, 0, s->dgamma, s->dbeta, s->dout, s->inp, s->gamma, s->beta,
                         s->mean, s->invstd, s->d, MODE_TRAIN, s->relu);
  }
}

static void *bn_side_thread(void *p) {
  bn_side_run(p);
  return NULL;
}

static void check_bn_shared(int nhwc, int relu) {
  enum { B = 5, C = 6, H = 3, W = 4, N = B * C * H * W };
  const int half = 2; /* images 0-1 on one side, 2-4 on the other */
  static float inp[N], dout[N], gamma[C], beta[C];
  Rng rng;
  rng_seed(&rng, 21);
  fill_uniform(inp, N, &rng, 3, 5); /* a mean far from 0: the shift matters */
  fill_uniform(dout, N, &rng, -1, 1);
  fill_uniform(gamma, C, &rng, 0.5f, 1.5f);
  fill_uniform(beta, C, &rng, -1, 1);
  static TestPair pair;
  pthread_barrier_init(&pair.barrier, NULL, 2);
  SharedSide whole = {.nhwc = nhwc, .relu = relu}, side[2];
  whole.d = (BatchNormDims){.B = B, .C = C, .H = H, .W = W, .eps = 1e-5f, .momentum = 0.1f};
  whole.inp = inp, whole.dout = dout, whole.gamma = gamma, whole.beta = beta;
  float buf[3][2 * N + 8 * C];
  for (int s = 0; s < 3; s++) {
    SharedSide *t = s < 2 ? &side[s] : &whole;
    if (s < 2) {
      *t = whole;
      t->pair = (TestPairSide){&pair, s};
      t->share = (BatchShare){.sum = test_pair_sum, .ctx = &t->pair, .first_row = s ? half : 0};
      t->d.share = &t->share;
      t->d.B = s ? B - half : half;
      const size_t at = s ? (size_t)half * C * H * W : 0;
      t->inp = inp + at, t->dout = dout + at;
    }
    float *f = buf[s];
    t->out = f, t->dinp = f + N, t->mean = f + 2 * N, t->invstd = t->mean + C;
    t->rm = t->invstd + C, t->rv = t->rm + C, t->dgamma = t->rv + C, t->dbeta = t->dgamma + C;
    for (int c = 0; c < C; c++) t->rm[c] = 0.5f, t->rv[c] = 2.0f, t->dgamma[c] = t->dbeta[c] = 0;
    t->scratch = malloc(batchnorm2d_nhwc_scratch_bytes(C));
    t->nbt = 0;
  }
  bn_side_run(&whole);
  pthread_t other;
  pthread_create(&other, NULL, bn_side_thread, &side[1]);
  bn_side_run(&side[0]);
  pthread_join(other, NULL);
  const size_t split = (size_t)half * C * H * W;
  for (size_t i = 0; i < N; i++) {
    const SharedSide *s = &side[i >= split];
    const size_t j = i - (i >= split ? split : 0);
    assert_float_equal(s->out[j], whole.out[i], 1e-5);
    assert_float_equal(s->dinp[j], whole.dinp[i], 1e-5);
  }
  for (int s = 0; s < 2; s++)
    for (int c = 0; c < C; c++) {
      assert_float_equal(side[s].mean[c], whole.mean[c], 1e-6);
      assert_float_equal(side[s].invstd[c], whole.invstd[c], 1e-5);
      assert_float_equal(side[s].rm[c], whole.rm[c], 1e-6);
      assert_float_equal(side[s].rv[c], whole.rv[c], 1e-5);
    }
  /* each side's parameter gradients are its share: they add up to the whole batch's */
  for (int c = 0; c < C; c++) {
    assert_float_equal(side[0].dgamma[c] + side[1].dgamma[c], whole.dgamma[c], 1e-4);
    assert_float_equal(side[0].dbeta[c] + side[1].dbeta[c], whole.dbeta[c], 1e-4);
  }
  for (int s = 0; s < 3; s++) free((s < 2 ? &side[s] : &whole)->scratch);
  pthread_barrier_destroy(&pair.barrier);
}

static void test_batchnorm_shared_batch(void **state) {
  (void)state;
  for (int nhwc = 0; nhwc < 2; nhwc++)
    for (int relu = 0; relu < 2; relu++) check_bn_shared(nhwc, relu);
}

/* ---- elementwise, pooling, dense, shortcut ------------------------------------ */

typedef enum {
  KERNEL_RELU,
  KERNEL_MAXPOOL,
  KERNEL_AVGPOOL,
  KERNEL_GAP,
  KERNEL_DENSE,
  KERNEL_DROPOUT,
  KERNEL_ADD,
  KERNEL_ADD_RELU,
  KERNEL_SHORTCUT
} KernelKind;

typedef struct {
  KernelKind op;
  PoolDims pd;
  ShortcutDims sd;
  int B, n_in, n_out;
  size_t ni, no;
  float *inp, *inp2, *w, *b, *out, *R, *mask;
  int32_t *argmax;
} OpCtx;

static double op_loss(void *p) {
  OpCtx *c = p;
  Rng rng;
  switch (c->op) {
    case KERNEL_RELU:
      relu_forward(c->out, c->inp, c->ni);
      break;
    case KERNEL_MAXPOOL:
      maxpool2d_forward(c->out, c->argmax, c->inp, c->pd);
      break;
    case KERNEL_AVGPOOL:
      avgpool2d_forward(c->out, c->inp, c->pd);
      break;
    case KERNEL_GAP:
      global_avgpool_forward(c->out, c->inp, c->pd.B, c->pd.C, c->pd.H * c->pd.W);
      break;
    case KERNEL_DENSE:
      dense_forward(c->out, c->inp, c->w, c->b, c->B, c->n_in, c->n_out);
      break;
    case KERNEL_DROPOUT:
      rng_seed(&rng, 99); /* the same mask every evaluation */
      dropout_forward(c->out, c->mask, c->inp, c->ni, 4, 0, 1, 0.4f, MODE_TRAIN, &rng);
      break;
    case KERNEL_ADD:
    case KERNEL_ADD_RELU:
      add_forward(c->out, c->inp, c->inp2, c->ni, c->op == KERNEL_ADD_RELU);
      break;
    case KERNEL_SHORTCUT:
      shortcut_pad_forward(c->out, c->inp, c->sd);
      break;
  }
  return dot_double(c->out, c->R, c->no);
}

static void op_backward(OpCtx *c, float *dinp, float *dinp2, float *dw, float *db, int acc) {
  switch (c->op) {
    case KERNEL_RELU:
      relu_backward(dinp, acc, c->R, c->out, c->ni);
      break;
    case KERNEL_MAXPOOL:
      maxpool2d_backward(dinp, acc, c->R, c->argmax, c->pd);
      break;
    case KERNEL_AVGPOOL:
      avgpool2d_backward(dinp, acc, c->R, c->pd);
      break;
    case KERNEL_GAP:
      global_avgpool_backward(dinp, acc, c->R, c->pd.B, c->pd.C, c->pd.H * c->pd.W);
      break;
    case KERNEL_DENSE:
      dense_backward(dinp, acc, dw, db, c->R, c->inp, c->w, c->B, c->n_in, c->n_out);
      break;
    case KERNEL_DROPOUT:
      dropout_backward(dinp, acc, c->R, c->mask, c->ni, MODE_TRAIN);
      break;
    case KERNEL_ADD:
    case KERNEL_ADD_RELU:
      add_backward(dinp, acc, dinp2, acc, c->R, c->op == KERNEL_ADD_RELU ? c->out : NULL, c->ni);
      break;
    case KERNEL_SHORTCUT:
      shortcut_pad_backward(dinp, acc, c->R, c->sd);
      break;
  }
}

static void op_run(OpCtx *c) {
  Rng rng;
  rng_seed(&rng, 5 + c->op);
  c->inp = malloc(4 * c->ni), c->inp2 = malloc(4 * c->ni), c->out = malloc(4 * c->no);
  c->R = malloc(4 * c->no), c->mask = malloc(4 * c->ni), c->argmax = malloc(4 * c->no);
  fill_distinct(c->inp, c->ni, &rng, 4.0f);
  fill_uniform(c->inp2, c->ni, &rng, -1, 1);
  /* fused add+ReLU: a second input of zero keeps the sum (= inp) off the kink */
  if (c->op == KERNEL_ADD_RELU) memset(c->inp2, 0, sizeof(float) * c->ni);
  fill_uniform(c->R, c->no, &rng, -1, 1);
  size_t nw = (size_t)c->n_in * c->n_out;
  c->w = malloc(4 * (nw ? nw : 1)), c->b = malloc(4 * (c->n_out ? c->n_out : 1));
  fill_uniform(c->w, nw, &rng, -1, 1);
  fill_uniform(c->b, c->n_out, &rng, -1, 1);
  float *dinp = calloc(c->ni, 4), *dinp2 = calloc(c->ni, 4), *dw = calloc(nw ? nw : 1, 4);
  float *db = calloc(c->n_out ? c->n_out : 1, 4);
  op_loss(c);
  op_backward(c, dinp, dinp2, dw, db, 1);
  /* overwrite mode: the same input gradients whatever the buffers held */
  float *ow = malloc(4 * c->ni), *ow2 = malloc(4 * c->ni), *scratch_w = calloc(nw ? nw : 1, 4);
  float *scratch_b = calloc(c->n_out ? c->n_out : 1, 4);
  for (size_t i = 0; i < c->ni; i++) ow[i] = ow2[i] = NAN;
  op_backward(c, ow, ow2, scratch_w, scratch_b, 0);
  assert_true(max_abs_diff(ow, dinp, c->ni) < 1e-6);
  if (c->op == KERNEL_ADD || c->op == KERNEL_ADD_RELU)
    assert_true(max_abs_diff(ow2, dinp2, c->ni) < 1e-6);
  free(ow), free(ow2), free(scratch_w), free(scratch_b);
  assert_true(gradcheck(op_loss, c, c->inp, dinp, NULL, c->ni, 1e-3f) < TOL_LINEAR);
  if (c->op == KERNEL_ADD || c->op == KERNEL_ADD_RELU)
    assert_true(gradcheck(op_loss, c, c->inp2, dinp2, NULL, c->ni, 1e-3f) < TOL_LINEAR);
  if (c->op == KERNEL_DENSE) {
    assert_true(gradcheck(op_loss, c, c->w, dw, NULL, nw, 1e-2f) < TOL_LINEAR);
    assert_true(gradcheck(op_loss, c, c->b, db, NULL, c->n_out, 1e-2f) < TOL_LINEAR);
  }
  free(c->inp), free(c->inp2), free(c->out), free(c->R), free(c->mask), free(c->argmax);
  free(c->w), free(c->b), free(dinp), free(dinp2), free(dw), free(db);
}

static void test_relu(void **state) {
  (void)state;
  OpCtx c = {.op = KERNEL_RELU, .ni = 60, .no = 60};
  op_run(&c);
}

static void check_pool_dilated(KernelKind op, int k, int stride, int pad, int dil) {
  OpCtx c = {.op = op,
             .pd = {.B = 2,
                    .C = 2,
                    .H = 7,
                    .W = 6,
                    .KH = k,
                    .KW = k,
                    .SH = stride,
                    .SW = stride,
                    .PT = pad,
                    .PB = pad,
                    .PL = pad,
                    .PR = pad,
                    .DH = dil,
                    .DW = dil}};
  assert_true(pool_dims_finish(&c.pd));
  c.ni = (size_t)2 * 2 * 7 * 6;
  c.no = op == KERNEL_GAP ? 4 : (size_t)2 * 2 * c.pd.OH * c.pd.OW;
  op_run(&c);
}

static void check_pool(KernelKind op, int k, int stride, int pad) {
  check_pool_dilated(op, k, stride, pad, 1);
}

/* nn.MaxPool2d(k, stride, pad, dilation) by its definition: the max over
 * the taps inside the image, planar and channels-last alike */
static void test_maxpool_dilated_oracle(void **state) {
  (void)state;
  PoolDims d = {.B = 2,
                .C = 3,
                .H = 9,
                .W = 8,
                .KH = 3,
                .KW = 2,
                .SH = 2,
                .SW = 1,
                .PT = 1,
                .PB = 1,
                .PL = 1,
                .PR = 0,
                .DH = 2,
                .DW = 3};
  assert_true(pool_dims_finish(&d));
  assert_int_equal(d.OH, (9 + 2 - 2 * 2 - 1) / 2 + 1);
  assert_int_equal(d.OW, (8 + 1 - 3 * 1 - 1) / 1 + 1);
  const size_t ni = (size_t)2 * 3 * 9 * 8, no = (size_t)2 * 3 * d.OH * d.OW;
  float *x = malloc(4 * ni), *y = malloc(4 * no), *xl = malloc(4 * ni), *yl = malloc(4 * no),
        *back = malloc(4 * no);
  int32_t *am = malloc(4 * no);
  Rng rng;
  rng_seed(&rng, 31);
  fill_distinct(x, ni, &rng, 2.0f);
  maxpool2d_forward(y, am, x, d);
  for (int p = 0; p < 2 * 3; p++)
    for (int oh = 0; oh < d.OH; oh++)
      for (int ow = 0; ow < d.OW; ow++) {
        float best = -INFINITY;
        for (int kh = 0; kh < d.KH; kh++)
          for (int kw = 0; kw < d.KW; kw++) {
            const int ih = oh * d.SH - d.PT + kh * d.DH, iw = ow * d.SW - d.PL + kw * d.DW;
            if (ih >= 0 && ih < d.H && iw >= 0 && iw < d.W)
              best = fmaxf(best, x[(size_t)p * 72 + ih * 8 + iw]);
          }
        assert_true(y[((size_t)p * d.OH + oh) * d.OW + ow] == best);
      }
  nchw_to_nhwc(xl, 0, x, 2, 3, 72);
  maxpool2d_forward_nhwc(yl, am, xl, d);
  nhwc_to_nchw(back, 0, yl, 2, 3, d.OH * d.OW);
  assert_memory_equal(back, y, 4 * no);
  /* a window that would see only padding is refused */
  PoolDims bad = {.B = 1,
                  .C = 1,
                  .H = 2,
                  .W = 2,
                  .KH = 2,
                  .KW = 2,
                  .SH = 1,
                  .SW = 1,
                  .PT = 1,
                  .PB = 1,
                  .PL = 1,
                  .PR = 1,
                  .DH = 3,
                  .DW = 3};
  assert_false(pool_dims_finish(&bad));
  free(x), free(y), free(xl), free(yl), free(back), free(am);
}

static void test_maxpool(void **state) {
  (void)state;
  check_pool(KERNEL_MAXPOOL, 2, 2, 0);
  check_pool(KERNEL_MAXPOOL, 3, 2, 1);
  check_pool(KERNEL_MAXPOOL, 3, 1, 1);
  check_pool_dilated(KERNEL_MAXPOOL, 2, 1, 1, 2);
  check_pool_dilated(KERNEL_MAXPOOL, 3, 2, 1, 2);
}

static void test_avgpool(void **state) {
  (void)state;
  check_pool(KERNEL_AVGPOOL, 2, 2, 0);
  check_pool(KERNEL_AVGPOOL, 3, 2, 1);
  check_pool(KERNEL_GAP, 1, 1, 0);
}

static void test_dense(void **state) {
  (void)state;
  OpCtx c = {.op = KERNEL_DENSE, .B = 3, .n_in = 7, .n_out = 4, .ni = 21, .no = 12};
  op_run(&c);
}

static void test_dropout(void **state) {
  (void)state;
  OpCtx c = {.op = KERNEL_DROPOUT, .ni = 200, .no = 200};
  op_run(&c);
  /* eval mode is the identity; train mode drops about p and rescales */
  float x[1000], y[1000], mask[1000];
  Rng rng;
  rng_seed(&rng, 3);
  for (int i = 0; i < 1000; i++) x[i] = 1.0f;
  dropout_forward(y, mask, x, 1000, 10, 0, 1, 0.3f, MODE_EVAL, &rng);
  assert_memory_equal(x, y, sizeof x);
  Rng again = rng;
  dropout_forward(y, mask, x, 1000, 10, 0, 1, 0.3f, MODE_TRAIN, &rng);
  int zeros = 0;
  for (int i = 0; i < 1000; i++) {
    zeros += y[i] == 0.0f;
    if (y[i] != 0.0f) assert_float_equal(y[i], 1.0f / 0.7f, 1e-6);
  }
  assert_in_range(zeros, 250, 350);
  /* a row's mask is its own: rows 1, 4 and 7 alone (a process holding them) get the same */
  float y_rows[300], mask_rows[300];
  dropout_forward(y_rows, mask_rows, x, 300, 3, 1, 3, 0.3f, MODE_TRAIN, &again);
  for (int r = 0; r < 3; r++)
    assert_memory_equal(mask_rows + 100 * r, mask + 100 * (1 + 3 * r), 100 * sizeof(float));
}

static void test_add(void **state) {
  (void)state;
  OpCtx c = {.op = KERNEL_ADD, .ni = 30, .no = 30};
  op_run(&c);
  OpCtx r = {.op = KERNEL_ADD_RELU, .ni = 30, .no = 30};
  op_run(&r);
}

static void test_shortcut(void **state) {
  (void)state;
  OpCtx c = {.op = KERNEL_SHORTCUT,
             .sd = {.B = 2,
                    .C = 2,
                    .H = 5,
                    .W = 5,
                    .OC = 4,
                    .OH = 4,
                    .OW = 8,
                    .SH = 2,
                    .SW = 1,
                    .PT = 1,
                    .PL = 2}};
  c.ni = 2 * 2 * 25, c.no = 2 * 4 * 32;
  op_run(&c);
}

/* ---- channels-last kernels ------------------------------------------------------ */

/* Each NHWC kernel against its planar twin (checked against finite
 * differences above) on the transposed tensors: outputs, running statistics,
 * input gradients (overwriting and accumulating) and parameter gradients. */
typedef enum {
  CL_BN_TRAIN,
  CL_BN_TRAIN_RELU,
  CL_BN_EVAL_RELU,
  CL_MAXPOOL,
  CL_MAXPOOL_2X2, /* the tiling 2x2 stride-2 kernels, with ties */
  CL_AVGPOOL,
  CL_GAP,
  CL_SHORTCUT
} ChannelsLastOp;

typedef struct {
  float *x, *y, *dy, *dx, *gamma, *beta, *rm, *rv, *mean, *invstd, *dgamma, *dbeta;
  int32_t *argmax;
  int64_t nbt;
} ClSide;

static void cl_run(ChannelsLastOp op, int nhwc, ClSide *s, int acc, BatchNormDims bd, PoolDims pd,
                   ShortcutDims sd, void *scratch) {
  const Mode mode = op == CL_BN_EVAL_RELU ? MODE_EVAL : MODE_TRAIN;
  const int relu = op != CL_BN_TRAIN;
  switch (op) {
    case CL_BN_TRAIN:
    case CL_BN_TRAIN_RELU:
    case CL_BN_EVAL_RELU:
      if (nhwc) {
        batchnorm2d_forward_nhwc(s->y, s->mean, s->invstd, s->x, s->gamma, s->beta, s->rm, s->rv,
                                 &s->nbt, bd, mode, relu, scratch);
        batchnorm2d_backward_nhwc(s->dx, acc, s->dgamma, s->dbeta, s->dy, s->x, s->gamma, s->beta,
                                  s->mean, s->invstd, bd, mode, relu, scratch);
      } else {
        batchnorm2d_forward(s->y, s->mean, s->invstd, s->x, s->gamma, s->beta, s->rm, s->rv,
                            &s->nbt, bd, mode, relu);
        batchnorm2d_backward(s->dx, acc, s->dgamma, s->dbeta, s->dy, s->x, s->gamma, s->beta,
                             s->mean, s->invstd, bd, mode, relu);
      }
      break;
    case CL_MAXPOOL:
    case CL_MAXPOOL_2X2:
      (nhwc ? maxpool2d_forward_nhwc : maxpool2d_forward)(s->y, s->argmax, s->x, pd);
      (nhwc ? maxpool2d_backward_nhwc : maxpool2d_backward)(s->dx, acc, s->dy, s->argmax, pd);
      break;
    case CL_AVGPOOL:
      (nhwc ? avgpool2d_forward_nhwc : avgpool2d_forward)(s->y, s->x, pd);
      (nhwc ? avgpool2d_backward_nhwc : avgpool2d_backward)(s->dx, acc, s->dy, pd);
      break;
    case CL_GAP:
      (nhwc ? global_avgpool_forward_nhwc : global_avgpool_forward)(s->y, s->x, pd.B, pd.C,
                                                                    pd.H * pd.W);
      (nhwc ? global_avgpool_backward_nhwc : global_avgpool_backward)(s->dx, acc, s->dy, pd.B, pd.C,
                                                                      pd.H * pd.W);
      break;
    case CL_SHORTCUT:
      (nhwc ? shortcut_pad_forward_nhwc : shortcut_pad_forward)(s->y, s->x, sd);
      (nhwc ? shortcut_pad_backward_nhwc : shortcut_pad_backward)(s->dx, acc, s->dy, sd);
      break;
  }
}

static void check_channels_last(ChannelsLastOp op, int C) {
  /* odd sides: the 2x2 tiling leaves a last row and column no window covers */
  const int B = 3, H = 7, W = op == CL_MAXPOOL_2X2 ? 5 : 6, HW = H * W;
  BatchNormDims bd = {.B = B, .C = C, .H = H, .W = W, .eps = 1e-5f, .momentum = 0.1f};
  PoolDims pd = {.B = B,
                 .C = C,
                 .H = H,
                 .W = W,
                 .KH = 3,
                 .KW = 3,
                 .SH = 2,
                 .SW = 2,
                 .PT = 1,
                 .PB = 1,
                 .PL = 1,
                 .PR = 1};
  pool_dims_finish(&pd);
  ShortcutDims sd = {.B = B,
                     .C = C,
                     .H = H,
                     .W = W,
                     .OC = 2 * C,
                     .OH = 7,
                     .OW = 3,
                     .SH = 2,
                     .SW = 3,
                     .PT = 1,
                     .PL = 1};
  int OC = C, OHW = HW;
  if (op == CL_MAXPOOL_2X2) {
    pd = (PoolDims){.B = B, .C = C, .H = H, .W = W, .KH = 2, .KW = 2, .SH = 2, .SW = 2};
    assert_true(pool_dims_finish(&pd));
  }
  if (op == CL_MAXPOOL || op == CL_MAXPOOL_2X2 || op == CL_AVGPOOL) OHW = pd.OH * pd.OW;
  if (op == CL_GAP) OHW = 1;
  if (op == CL_SHORTCUT) OC = 2 * C, OHW = sd.OH * sd.OW;
  const size_t ni = (size_t)B * C * HW, no = (size_t)B * OC * OHW;
  Rng rng;
  rng_seed(&rng, 40 + op);
  ClSide p = {0}, q = {0}; /* planar, channels-last */
  ClSide *sides[2] = {&p, &q};
  for (int i = 0; i < 2; i++) {
    ClSide *s = sides[i];
    s->x = malloc(4 * ni), s->dx = malloc(4 * ni), s->y = malloc(4 * no), s->dy = malloc(4 * no);
    s->argmax = malloc(sizeof(int32_t) * no);
    float **per_channel[] = {&s->gamma, &s->beta,   &s->rm,     &s->rv,
                             &s->mean,  &s->invstd, &s->dgamma, &s->dbeta};
    for (int k = 0; k < 8; k++) *per_channel[k] = calloc((size_t)C, 4);
  }
  fill_distinct(p.x, ni, &rng, 4.0f); /* no max-pool ties */
  if (op == CL_MAXPOOL_2X2)           /* ties: the first tap in the window wins on both sides */
    for (size_t i = 0; i < ni; i++) p.x[i] = floorf(p.x[i]);
  fill_uniform(p.dy, no, &rng, -1, 1);
  fill_uniform(p.gamma, C, &rng, 0.5f, 1.5f);
  fill_uniform(p.beta, C, &rng, -1, 1);
  fill_uniform(p.rm, C, &rng, -0.5f, 0.5f);
  fill_uniform(p.rv, C, &rng, 0.5f, 2.0f);
  nchw_to_nhwc(q.x, 0, p.x, B, C, HW);
  nchw_to_nhwc(q.dy, 0, p.dy, B, OC, OHW);
  memcpy(q.gamma, p.gamma, 4 * C), memcpy(q.beta, p.beta, 4 * C);
  memcpy(q.rm, p.rm, 4 * C), memcpy(q.rv, p.rv, 4 * C);
  void *scratch = malloc(batchnorm2d_nhwc_scratch_bytes(C));
  float *back = malloc(4 * (ni > no ? ni : no));
  for (int acc = 0; acc < 2; acc++) {
    fill_uniform(p.dx, ni, &rng, -1, 1); /* what accumulate adds to, or overwrite erases */
    nchw_to_nhwc(q.dx, 0, p.dx, B, C, HW);
    cl_run(op, 0, &p, acc, bd, pd, sd, NULL);
    cl_run(op, 1, &q, acc, bd, pd, sd, scratch);
    nhwc_to_nchw(back, 0, q.y, B, OC, OHW);
    assert_true(max_abs_diff(back, p.y, no) < 1e-5);
    nhwc_to_nchw(back, 0, q.dx, B, C, HW);
    assert_true(max_abs_diff(back, p.dx, ni) < 1e-5);
  }
  if (op == CL_MAXPOOL || op == CL_MAXPOOL_2X2) { /* forward only: the same maxima */
    maxpool2d_forward_nhwc(back, NULL, q.x, pd);
    assert_memory_equal(back, q.y, 4 * no);
    maxpool2d_forward(back, NULL, p.x, pd);
    assert_memory_equal(back, p.y, 4 * no);
  }
  assert_true(max_abs_diff(q.dgamma, p.dgamma, C) < 1e-4);
  assert_true(max_abs_diff(q.dbeta, p.dbeta, C) < 1e-4);
  assert_true(max_abs_diff(q.rm, p.rm, C) < 1e-6 && max_abs_diff(q.rv, p.rv, C) < 1e-6);
  assert_int_equal(q.nbt, p.nbt);
  for (int i = 0; i < 2; i++) {
    ClSide *s = sides[i];
    free(s->x), free(s->dx), free(s->y), free(s->dy), free(s->argmax);
    free(s->gamma), free(s->beta), free(s->rm), free(s->rv);
    free(s->mean), free(s->invstd), free(s->dgamma), free(s->dbeta);
  }
  free(scratch), free(back);
}

static void test_channels_last(void **state) {
  (void)state;
  /* 16 takes the inlined fixed-width loops, 5 and 36 the generic ones; batchnorm's ReLU
   * backward runs 5 in periods of 16 rows (7 and a tail of 14 here), 36 in periods of 4 rows
   * of 9 vectors (31 and a tail of 2), 67 (a period past the cap) in the scalar loops */
  const int channels[4] = {16, 5, 36, 67};
  for (int op = CL_BN_TRAIN; op <= CL_SHORTCUT; op++)
    for (int i = 0; i < 4; i++) check_channels_last((ChannelsLastOp)op, channels[i]);
}

/* ---- softmax cross-entropy ------------------------------------------------------ */

typedef struct {
  float *logits, *probs, *weights;
  int *labels, per_sample;
} XentCtx;

static double xent_loss(void *p) {
  XentCtx *c = p;
  return softmax_xent(NULL, c->probs, c->logits, c->labels, c->weights, 3, 4, c->per_sample) *
         (c->per_sample ? 3.0 : 1.0);
}

static void test_softmax_xent(void **state) {
  (void)state;
  Rng rng;
  rng_seed(&rng, 1);
  float logits[12], probs[12], dlogits[12], weights[4] = {0.5f, 2.0f, 1.0f, 3.0f};
  int labels[3] = {1, 3, 0};
  fill_uniform(logits, 12, &rng, -3, 3);
  for (int variant = 0; variant < 3; variant++) {
    XentCtx c = {logits, probs, variant == 1 ? weights : NULL, labels, variant == 2};
    softmax_xent(dlogits, probs, logits, labels, c.weights, 3, 4, c.per_sample);
    assert_true(gradcheck(xent_loss, &c, logits, dlogits, NULL, 12, 1e-3f) < TOL_SMOOTH);
  }
  /* a uniform prediction over K classes costs log K */
  float zero[4] = {0}, p4[4];
  int y = 2;
  assert_float_equal(softmax_xent(NULL, p4, zero, &y, NULL, 1, 4, 0), logf(4.0f), 1e-6);
}

int main(void) {
  mr_set_threads(2);
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_conv2d),
      cmocka_unit_test(test_conv2d_pointwise),
      cmocka_unit_test(test_conv2d_direct),
      cmocka_unit_test(test_conv2d_narrow),
      cmocka_unit_test(test_conv2d_depthwise),
      cmocka_unit_test(test_conv2d_separable),
      cmocka_unit_test(test_conv2d_folded),
      cmocka_unit_test(test_conv_few),
      cmocka_unit_test(test_batchnorm_eval_concat),
      cmocka_unit_test(test_batchnorm_train),
      cmocka_unit_test(test_batchnorm_eval),
      cmocka_unit_test(test_batchnorm_relu_mask),
      cmocka_unit_test(test_batchnorm_running_stats),
      cmocka_unit_test(test_batchnorm_pool2),
      cmocka_unit_test(test_batchnorm_shared_batch),
      cmocka_unit_test(test_relu),
      cmocka_unit_test(test_maxpool),
      cmocka_unit_test(test_avgpool),
      cmocka_unit_test(test_maxpool_dilated_oracle),
      cmocka_unit_test(test_dense),
      cmocka_unit_test(test_dropout),
      cmocka_unit_test(test_add),
      cmocka_unit_test(test_shortcut),
      cmocka_unit_test(test_channels_last),
      cmocka_unit_test(test_softmax_xent),
  };
  return cmocka_run_group_tests_name("layers", tests, NULL, NULL);
}
