/* Kernels: every op is a forward/backward pair over plain float arrays with
 * explicit shapes (NCHW). Parameter gradients always ACCUMULATE (+=). The
 * input gradient accumulates too when `accumulate` is set, so a tensor read
 * by two layers receives two adds; the first writer passes 0 and overwrites,
 * which spares zeroing every gradient buffer before backward. NULL skips a
 * gradient. Naive versions of the optimised kernels are the test oracles. */
#ifndef MR_LAYERS_H
#define MR_LAYERS_H

#include <stddef.h>
#include <stdint.h>

#include "medrobust.h"

/* kernels specialised by literal arguments at each call site */
#define ALWAYS_INLINE static inline __attribute__((always_inline))

/* ---- conv2d ------------------------------------------------------------ */
typedef struct {
  int B, C, H, W;     /* input */
  int OC, OH, OW;     /* output */
  int KH, KW, SH, SW; /* kernel and stride */
  int PT, PB, PL, PR; /* zero padding: top, bottom, left, right */
  int DH, DW;         /* dilation: 1 is a dense kernel */
  int groups;
} Conv2dDims;

/* OH/OW from the rest (stride or dilation 0 read as 1); returns 0 if the
 * output would be empty or a field is out of range. */
int conv2d_dims_finish(Conv2dDims *d);
/* Multiply-adds whose input pixel is inside the image (padding taps are no work). */
double conv2d_macs_inside(Conv2dDims d);
/* Floats of per-thread scratch the fast kernels need (im2col column). */
size_t conv2d_scratch_floats(Conv2dDims d);

/* inp (B,C,H,W), weight (OC,C/g,KH,KW), bias (OC) or NULL -> out (B,OC,OH,OW).
 * scratch: nthreads * conv2d_scratch_floats(d) floats. */
void conv2d_forward(float *out, const float *inp, const float *weight, const float *bias,
                    Conv2dDims d, float *scratch);
/* dweight_partial: (nthreads-1) * weight size floats, for per-thread sums
 * that are added in thread order (deterministic for a given thread count). */
void conv2d_backward(float *dinp, int accumulate, float *dweight, float *dbias, const float *dout,
                     const float *inp, const float *weight, Conv2dDims d, float *scratch,
                     float *dweight_partial);
void conv2d_forward_naive(float *out, const float *inp, const float *weight, const float *bias,
                          Conv2dDims d);
void conv2d_backward_naive(float *dinp, float *dweight, float *dbias, const float *dout,
                           const float *inp, const float *weight, Conv2dDims d);

/* The fast path through oneDNN: primitives for one (dims, batch), built once.
 * Blocked-layout buffers come from a workspace shared by all layers: slot i
 * needs conv2d_dnnl_workspace_bytes(c, i) bytes, 64-byte aligned. Same
 * semantics as conv2d_forward/backward (backward accumulates, NULL skips). */
typedef enum {
  CONV_WS_SRC,
  CONV_WS_WEI,
  CONV_WS_DST,
  CONV_WS_BD_WEI,
  CONV_WS_DDST,
  CONV_WS_DSRC,
  CONV_WS_BW_SRC,
  CONV_WS_BW_DDST,
  CONV_WS_DWEI,
  CONV_WS_DBIAS,
  CONV_WS_COUNT
} ConvWorkspaceSlot;
typedef struct ConvDnnl ConvDnnl;
/* NULL if oneDNN has no implementation for these dims (use the im2col path).
 * channels_last: src/dst (and their gradients) are NHWC instead of NCHW. */
ConvDnnl *conv2d_dnnl_create(Conv2dDims d, int has_bias, int channels_last);
void conv2d_dnnl_free(ConvDnnl *c);
size_t conv2d_dnnl_workspace_bytes(const ConvDnnl *c, ConvWorkspaceSlot slot);
void conv2d_dnnl_forward(ConvDnnl *c, void *const *ws, float *out, const float *inp,
                         const float *weight, const float *bias);
void conv2d_dnnl_backward(ConvDnnl *c, void *const *ws, float *dinp, int accumulate, float *dweight,
                          float *dbias, const float *dout, const float *inp, const float *weight);

/* Inference only: a batchnorm folded into the convolution (weights already
 * scaled per output channel, bias = bias*scale + shift) with an optional ReLU
 * post-op, in one primitive; with sum, the result is added to what the output buffer holds
 * before the ReLU (a residual add; refused when oneDNN's output layout is not the caller's).
 * Enable before sizing the workspace; returns 0 if oneDNN cannot (then keep the separate
 * layers; a second call replaces the first). set_folded keeps the folded weights
 * (reordered to the primitive's layout) and bias for every forward_folded until the next
 * set_folded, tagged with the caller's version of the weights (folded_version: 0 before the
 * first); set_folded returns 0 when there is no memory to keep them. forward_folded uses the
 * kept ones when weight is NULL, else reorders weight (and takes bias) for this call only. */
int conv2d_dnnl_enable_folded(ConvDnnl *c, int relu, int sum);
int conv2d_dnnl_has_folded(const ConvDnnl *c);
int conv2d_dnnl_folded_sums(const ConvDnnl *c);
uint64_t conv2d_dnnl_folded_version(const ConvDnnl *c);
int conv2d_dnnl_set_folded(ConvDnnl *c, const float *weight, const float *bias, uint64_t version);
void conv2d_dnnl_forward_folded(ConvDnnl *c, void *const *ws, float *out, const float *inp,
                                const float *weight, const float *bias, int pool2);
/* whether forward_folded can also do a 2x2 max-pool at stride 2 (pool2; out is then the
 * pooled map): folded without the sum, by conv2d_direct */
int conv2d_dnnl_folded_pools(const ConvDnnl *c);
/* whether the folded convolution is a pointwise one run as a matrix product (few rows) */
int conv2d_dnnl_folded_by_product(const ConvDnnl *c);
/* Inference's pointwise layer pw reading depthwise layer dw (both with a batchnorm folded in,
 * dw's enabled first): pw's folded forward becomes conv2d_separable's product (returns 0 when
 * the pair is not supported: pw keeps no folded forward), and forward_separable runs both layers
 * in one pass on their kept folded weights (both set_folded at the current version), reading
 * dw's input and writing pw's output. */
int conv2d_dnnl_enable_folded_separable(ConvDnnl *pw, const ConvDnnl *dw, int relu);
int conv2d_dnnl_folded_separable(const ConvDnnl *pw);
void conv2d_dnnl_forward_separable(const ConvDnnl *dw, const ConvDnnl *pw, void *const *ws,
                                   float *out, const float *inp);

/* ---- conv2d over an image of few channels (inference) ------------------
 * A convolution reading 1 to 3 channels, channels-last, weights [OC][C][KH][KW] (a batchnorm
 * already folded in), then max(0, .) if relu, then the 2x2 max-pool at stride 2 if pool2
 * (out is then (B, OH/2, OW/2, OC)). supported: C, groups 1, no dilation, OC a multiple of 16
 * up to CONV_FEW_MAX_OUT, KH*KW*C up to CONV_FEW_MAX_TAPS. scratch: conv2d_few_scratch_floats
 * floats (the padded input). */
#define CONV_FEW_MAX_CHANNELS 3
#define CONV_FEW_MAX_OUT 64
#define CONV_FEW_MAX_TAPS 64
int conv2d_few_supported(Conv2dDims d);
size_t conv2d_few_scratch_floats(Conv2dDims d);
void conv2d_few_forward_nhwc(float *out, float *scratch, const float *inp, const float *weight,
                             const float *bias, Conv2dDims d, int relu, int pool2);

/* ---- conv2d by a direct kernel (conv2d_direct.c) ------------------------
 * 3x3 with one pixel of zero padding on every side at stride 1 (or 2 on even maps), or 7x7 with
 * three at stride 1 (OC a multiple of 32); groups 1, channels-last, at least 16 input channels,
 * OC a multiple of 16, OW a multiple of a strip width the kernel has (16, 14, 8, 7, 4 or 3), on a
 * CPU with AVX-512 (supported). Weights are packed first: pack from the stored [OC][C][T][T].
 * forward: out = conv(inp) + bias (bias may be NULL), plus what out holds if sum, then
 * max(0, .) if relu. input_grad at stride 1 (transposed_supported): dinp = (or += when
 * accumulate) the input gradient, the weights packed into packed (packed_floats(d) floats)
 * first. */
int conv2d_direct_supported(Conv2dDims d);
int conv2d_direct_strip(Conv2dDims d, int *pixels, int *vectors);
size_t conv2d_direct_packed_floats(Conv2dDims d);
void conv2d_direct_pack(float *packed, const float *weight, Conv2dDims d);
int conv2d_direct_transposed_supported(Conv2dDims d);
void conv2d_direct_forward(float *out, const float *inp, const float *packed, const float *bias,
                           Conv2dDims d, int sum, int relu);
void conv2d_direct_input_grad(float *dinp, float *packed, const float *dout, const float *weight,
                              Conv2dDims d, int accumulate);
/* forward (no sum) then the 2x2 max-pool at stride 2: out is (B, OH/2, OW/2, OC); supported
 * when the two rows a pooled row takes fit the kernel's tile */
int conv2d_direct_pool2_supported(Conv2dDims d);
void conv2d_direct_forward_pool2(float *out, const float *inp, const float *packed,
                                 const float *bias, Conv2dDims d, int relu);
/* dweight [OC][C][T][T] += the weight gradient, for supported dims with C a multiple of 16
 * (wgrad_supported). The batch's rows are cut into `slices` slices, summed apart into partials
 * (conv2d_direct_wgrad_floats(d, slices) floats) and added in slice order: the result depends
 * on slices, not on the threads that run them. */
int conv2d_direct_wgrad_supported(Conv2dDims d);
size_t conv2d_direct_wgrad_floats(Conv2dDims d, int slices);
void conv2d_direct_weight_grad(float *dweight, float *partials, const float *dout, const float *inp,
                               Conv2dDims d, int slices);

/* ---- 3x3 conv2d into 12 output channels (conv2d_narrow.c) ----------------
 * Forward only, as conv2d_direct's (stride 1, one pixel of padding, channels-last, AVX-512) but
 * for OC 12 on even widths, with C a multiple of 16. Weights packed first (packed_floats). */
int conv2d_narrow_supported(Conv2dDims d);
size_t conv2d_narrow_packed_floats(Conv2dDims d);
void conv2d_narrow_pack(float *packed, const float *weight, Conv2dDims d);
void conv2d_narrow_forward(float *out, const float *inp, const float *packed, const float *bias,
                           Conv2dDims d, int sum, int relu);

/* ---- 3x3 depthwise conv2d (conv2d_depthwise.c) -----------------------------
 * groups = C = OC, C a multiple of 16, one pixel of zero padding, stride 1, or 2 on even maps;
 * channels-last. Weights [C][1][3][3] packed first (packed_floats) for the forward:
 * out = conv(inp) + bias (bias may be NULL), plus what out holds if sum, then max(0, .) if relu.
 * supported on CPUs with AVX-512, as conv2d_direct. */
int conv2d_depthwise_supported(Conv2dDims d);
size_t conv2d_depthwise_packed_floats(Conv2dDims d);
void conv2d_depthwise_pack(float *packed, const float *weight, Conv2dDims d);
/* at stride 1 (input_grad_supported): dinp = (or += when accumulate) the input gradient;
 * packed: packed_floats(d) floats of room for the weights */
int conv2d_depthwise_input_grad_supported(Conv2dDims d);
void conv2d_depthwise_input_grad(float *dinp, float *packed, const float *dout, const float *weight,
                                 Conv2dDims d, int accumulate);
void conv2d_depthwise_forward(float *out, const float *inp, const float *packed, const float *bias,
                              Conv2dDims d, int sum, int relu);
/* the forward's output rows [first, end) of the batch's images stacked (row g: image g / OH,
 * row g % OH), into rows_out, contiguous, on the calling thread; max(0, .) if relu */
void conv2d_depthwise_rows(float *rows_out, const float *inp, const float *packed,
                           const float *bias, Conv2dDims d, long first, long end, int relu);

/* ---- depthwise-separable block, inference (conv2d_separable.c) ------------------
 * A pointwise convolution (1x1, stride 1, groups 1, OC a multiple of 32; channels-last,
 * AVX-512: pointwise_panels_supported) with its weights packed in panels (panels_floats,
 * panels_pack from [OC][C]): forward out = max(0, .) if relu of inp * W + bias. And a 3x3
 * depthwise convolution followed by such a pointwise one reading it (separable_supported), in
 * one pass: out = pointwise(depthwise(inp)), each with its bias and ReLU; the depthwise
 * weights packed by conv2d_depthwise_pack; on `threads` threads (at most), with scratch of
 * separable_scratch_floats(dw, threads) floats. */
int conv2d_pointwise_panels_supported(Conv2dDims d);
size_t conv2d_pointwise_panels_floats(Conv2dDims d);
void conv2d_pointwise_panels_pack(float *packed, const float *weight, Conv2dDims d);
void conv2d_pointwise_panels_forward(float *out, const float *inp, const float *packed,
                                     const float *bias, Conv2dDims d, int relu);
int conv2d_separable_supported(Conv2dDims dw, Conv2dDims pw);
size_t conv2d_separable_scratch_floats(Conv2dDims dw, int threads);
void conv2d_separable_forward(float *out, float *scratch, const float *inp, const float *dw_packed,
                              const float *dw_bias, int dw_relu, Conv2dDims dw,
                              const float *pw_packed, const float *pw_bias, int pw_relu,
                              Conv2dDims pw, int threads);

/* ---- batchnorm2d ------------------------------------------------------- */
typedef struct {
  int B, C, H, W;
  float eps, momentum;
  const BatchShare *share; /* train mode: the batch is shared by several processes; NULL: alone */
  /* channels-last with the fused ReLU: a 2x2 max-pool at stride 2 follows, done here, so out
   * (forward) and dout (backward) are the pooled (B, H/2, W/2, C) map
   * (batchnorm2d_pool2_supported) */
  int pool2;
} BatchNormDims;

/* Train: normalises by batch statistics, saves mean/invstd (C) and updates the
 * running statistics PyTorch's way (unbiased running_var). Eval: uses the
 * running statistics and still fills save_mean/save_invstd for backward. */
void batchnorm2d_forward(float *out, float *save_mean, float *save_invstd, const float *inp,
                         const float *gamma, const float *beta, float *running_mean,
                         float *running_var, int64_t *num_batches_tracked, BatchNormDims d,
                         Mode mode, int relu);
/* relu: forward fused a ReLU (dout is masked where bn(inp) <= 0, recomputed from inp, gamma
 * and beta, so backward never reads the output) */
void batchnorm2d_backward(float *dinp, int accumulate, float *dgamma, float *dbeta,
                          const float *dout, const float *inp, const float *gamma,
                          const float *beta, const float *save_mean, const float *save_invstd,
                          BatchNormDims d, Mode mode, int relu);

/* Channels-last (B,H,W,C) variants, same semantics; scratch holds
 * batchnorm2d_nhwc_scratch_bytes(C) bytes, 8-byte aligned. */
int batchnorm2d_pool2_supported(int C, int H, int W);
size_t batchnorm2d_nhwc_scratch_bytes(int C);
void batchnorm2d_forward_nhwc(float *out, float *save_mean, float *save_invstd, const float *inp,
                              const float *gamma, const float *beta, float *running_mean,
                              float *running_var, int64_t *num_batches_tracked, BatchNormDims d,
                              Mode mode, int relu, void *scratch);
/* Eval mode over the channel concatenation of n inputs (B, H, W, C[i]), d.C their sum, which
 * is never stored; scratch: 2 * d.C floats */
void batchnorm2d_eval_concat_nhwc(float *out, float *save_mean, float *save_invstd,
                                  const float *const *in, const int *C, int n, const float *gamma,
                                  const float *beta, float *running_mean, float *running_var,
                                  BatchNormDims d, int relu, void *scratch);
void batchnorm2d_backward_nhwc(float *dinp, int accumulate, float *dgamma, float *dbeta,
                               const float *dout, const float *inp, const float *gamma,
                               const float *beta, const float *save_mean, const float *save_invstd,
                               BatchNormDims d, Mode mode, int relu, void *scratch);

/* ---- layouts ------------------------------------------------------------ */
/* (B,C,HW) <-> (B,HW,C); accumulate adds into dst instead of overwriting it */
void nchw_to_nhwc(float *dst, int accumulate, const float *src, int B, int C, int HW);
void nhwc_to_nchw(float *dst, int accumulate, const float *src, int B, int C, int HW);

/* ---- elementwise ------------------------------------------------------- */
void relu_forward(float *out, const float *inp, size_t n);
void relu_backward(float *dinp, int accumulate, const float *dout, const float *out, size_t n);
/* relu: out = max(0, a+b); backward then takes that output to mask dout */
void add_forward(float *out, const float *a, const float *b, size_t n, int relu);
void add_backward(float *da, int accumulate_a, float *db, int accumulate_b, const float *dout,
                  const float *out, size_t n);
/* Inverted dropout: mask holds 0 or 1/(1-p). Eval mode is the identity. Row b (of `rows`,
 * n values in all) draws its mask from stream first_row + b * row_stride of one draw of rng,
 * so a row's mask does not depend on the other rows of its batch, nor on which process holds
 * it. */
void dropout_forward(float *out, float *mask, const float *inp, size_t n, int rows, int first_row,
                     int row_stride, float p, Mode mode, Rng *rng);

/* The weighted mean cross-entropy's denominator, sum_i w_yi (weights NULL: the batch size). */
double softmax_xent_weight_sum(const int *labels, const float *weights, int batch);
/* softmax_xent's weighted mean with the denominator given: this batch's share of a larger
 * batch's loss, and its gradient. */
float softmax_xent_over(float *dlogits, float *probs, const float *logits, const int *labels,
                        const float *weights, int batch, int k, double wsum);
void dropout_backward(float *dinp, int accumulate, const float *dout, const float *mask, size_t n,
                      Mode mode);

/* leaky ReLU: x for x > 0, slope * x otherwise (PyTorch's nn.LeakyReLU) */
void leaky_relu_forward(float *out, const float *inp, size_t n, float slope);
void leaky_relu_backward(float *dinp, int accumulate, const float *dout, const float *inp, size_t n,
                         float slope);
/* sigmoid: backward takes the forward output (s' = s (1 - s)) */
void sigmoid_forward(float *out, const float *inp, size_t n);
void sigmoid_backward(float *dinp, int accumulate, const float *dout, const float *out, size_t n);
/* clip to [lo, hi] (ReLU6: 0, 6); the gradient passes where lo < x < hi */
void clip_forward(float *out, const float *inp, size_t n, float lo, float hi);
void clip_backward(float *dinp, int accumulate, const float *dout, const float *inp, size_t n,
                   float lo, float hi);

/* Quantisation to `levels` grey levels: a non-differentiable input stage
 * whose true derivative, zero, is what backward returns. */
void quantize_forward(float *out, const float *inp, size_t n, int levels);
void quantize_backward(float *dinp, int accumulate, size_t n);

/* ---- pooling ----------------------------------------------------------- */
typedef struct {
  int B, C, H, W;
  int OH, OW;
  int KH, KW, SH, SW; /* window and stride */
  int PT, PB, PL, PR; /* padding: top, bottom, left, right */
  int DH, DW;         /* dilation (max pooling only; 1 = dense window) */
} PoolDims;

int pool_dims_finish(PoolDims *d);
/* Padding counts as -inf; argmax (B,C,OH,OW) holds the flat index in the plane (NULL: not kept). */
void maxpool2d_forward(float *out, int32_t *argmax, const float *inp, PoolDims d);
void maxpool2d_backward(float *dinp, int accumulate, const float *dout, const int32_t *argmax,
                        PoolDims d);
/* Divides by KH*KW (PyTorch's count_include_pad=True, ceil_mode=False). */
void avgpool2d_forward(float *out, const float *inp, PoolDims d);
void avgpool2d_backward(float *dinp, int accumulate, const float *dout, PoolDims d);
/* (B,C,H,W) -> (B,C) */
void global_avgpool_forward(float *out, const float *inp, int B, int C, int HW);
void global_avgpool_backward(float *dinp, int accumulate, const float *dout, int B, int C, int HW);

/* Channels-last (B,H,W,C) variants; argmax (B,OH,OW,C) keeps the in-plane index. */
void maxpool2d_forward_nhwc(float *out, int32_t *argmax, const float *inp, PoolDims d);
void maxpool2d_backward_nhwc(float *dinp, int accumulate, const float *dout, const int32_t *argmax,
                             PoolDims d);
void avgpool2d_forward_nhwc(float *out, const float *inp, PoolDims d);
void avgpool2d_backward_nhwc(float *dinp, int accumulate, const float *dout, PoolDims d);
void global_avgpool_forward_nhwc(float *out, const float *inp, int B, int C, int HW);
void global_avgpool_backward_nhwc(float *dinp, int accumulate, const float *dout, int B, int C,
                                  int HW);

/* ---- dense ------------------------------------------------------------- */
/* inp (B,I), weight (O,I) as PyTorch's Linear, bias (O) -> out (B,O) */
void dense_forward(float *out, const float *inp, const float *weight, const float *bias, int B,
                   int n_in, int n_out);
void dense_backward(float *dinp, int accumulate, float *dweight, float *dbias, const float *dout,
                    const float *inp, const float *weight, int B, int n_in, int n_out);

/* ---- CIFAR ResNet option-A shortcut ------------------------------------ */
/* out[:, pad_lo:pad_lo+C, PT:PT+IH, PL:PL+IW] = inp[:, :, ::SH, ::SW] with
 * pad_lo = (OC-C)/2 and IH, IW the subsample's size; everything else 0 */
typedef struct {
  int B, C, H, W;
  int OC, OH, OW;
  int SH, SW;
  int PT, PL; /* zero rows above, columns to the left */
} ShortcutDims;
void shortcut_pad_forward(float *out, const float *inp, ShortcutDims d);
void shortcut_pad_backward(float *dinp, int accumulate, const float *dout, ShortcutDims d);
void shortcut_pad_forward_nhwc(float *out, const float *inp, ShortcutDims d);
void shortcut_pad_backward_nhwc(float *dinp, int accumulate, const float *dout, ShortcutDims d);

/* ---- concat along channels ------------------------------------------- */
/* n tensors (B, C_i, HW) -> out (B, sum C_i, HW), planar or channels-last
 * (B, HW, C_i); backward slices dout back into each din[i] (NULL skips one;
 * acc[i] accumulates). */
void concat_forward(float *out, const float *const *in, const int *C, int n, int B, int HW,
                    int channels_last);
void concat_backward(float *const *din, const unsigned char *acc, const float *dout, const int *C,
                     int n, int B, int HW, int channels_last);

/* ---- elementwise binary ops with broadcasting -------------------------- */
/* out = a (op) b, a (B, C,H,W) and b (B, bC,bH,bW) with each b dim equal to
 * a's or 1 (b == NULL: the constant `value` instead), planar or
 * channels-last. Backward: da (+)= d/da, db accumulates the sums over the
 * broadcast dims (always +=: the caller zeroes it when it writes first). */
typedef enum { BINARY_MUL, BINARY_SUB, BINARY_DIV } BinaryOp;
typedef struct {
  int B, C, H, W;
  int bC, bH, bW;
  BinaryOp op;
  float value;
  int channels_last;
} BinaryDims;
void binary_forward(float *out, const float *a, const float *b, BinaryDims d);
void binary_backward(float *da, int accumulate_a, float *db, const float *dout, const float *a,
                     const float *b, BinaryDims d);

/* ---- upsampling by integer factors (PyTorch semantics) ------------------ */
/* nearest: src = floor(dst / s); bilinear with align_corners=False:
 * src = max(0, (dst + 0.5) / s - 0.5). Tensors are (B,C,H,W) or, with
 * channels_last, (B,H,W,C); out is (B, C, H*SH, W*SW). */
typedef struct {
  int B, C, H, W, SH, SW;
  int bilinear, channels_last;
} UpsampleDims;
void upsample_forward(float *out, const float *inp, UpsampleDims d);
void upsample_backward(float *dinp, int accumulate, const float *dout, UpsampleDims d);

#endif
