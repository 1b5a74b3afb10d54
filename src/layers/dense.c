/* dense (PyTorch Linear): out = inp * weight^T + bias, through sgemm. */
#include <cblas.h>

#include "layers.h"

void dense_forward(float *out, const float *inp, const float *weight, const float *bias, int B,
                   int n_in, int n_out) {
  cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, B, n_out, n_in, 1.0f, inp, n_in, weight,
              n_in, 0.0f, out, n_out);
  if (bias)
    for (int b = 0; b < B; b++)
      for (int o = 0; o < n_out; o++) out[(size_t)b * n_out + o] += bias[o];
}

void dense_backward(float *dinp, int accumulate, float *dweight, float *dbias, const float *dout,
                    const float *inp, const float *weight, int B, int n_in, int n_out) {
  if (dinp)
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, B, n_in, n_out, 1.0f, dout, n_out,
                weight, n_in, accumulate ? 1.0f : 0.0f, dinp, n_in);
  if (dweight)
    cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, n_out, n_in, B, 1.0f, dout, n_out, inp,
                n_in, 1.0f, dweight, n_in);
  if (dbias)
    for (int b = 0; b < B; b++)
      for (int o = 0; o < n_out; o++) dbias[o] += dout[(size_t)b * n_out + o];
}
