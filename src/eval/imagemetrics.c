/* Perceptual distances between an image and its perturbed copy: SSIM (Wang
 * et al. 2004: 11x11 Gaussian window, sigma 1.5, K1 0.01, K2 0.03, dynamic
 * range 1, mean over the valid region and the channels) and PSNR. */
#include <math.h>

#include "medrobust.h"

double image_ssim(const float *a, const float *b, int c, int h, int w) {
  enum { R = 5 };
  double win[2 * R + 1], wsum = 0;
  for (int i = -R; i <= R; i++) wsum += win[i + R] = exp(-(i * i) / (2 * 1.5 * 1.5));
  for (int i = 0; i <= 2 * R; i++) win[i] /= wsum;
  const double c1 = 0.01 * 0.01, c2 = 0.03 * 0.03;
  /* images smaller than the window: one window over the whole image */
  const int r = h < 2 * R + 1 || w < 2 * R + 1 ? 0 : R;
  double total = 0;
  long count = 0;
  for (int ch = 0; ch < c; ch++) {
    const float *pa = a + (size_t)ch * h * w, *pb = b + (size_t)ch * h * w;
    if (!r) {
      double ma = 0, mb = 0, va = 0, vb = 0, cov = 0;
      const int n = h * w;
      for (int i = 0; i < n; i++) ma += pa[i], mb += pb[i];
      ma /= n, mb /= n;
      for (int i = 0; i < n; i++)
        va += (pa[i] - ma) * (pa[i] - ma), vb += (pb[i] - mb) * (pb[i] - mb),
            cov += (pa[i] - ma) * (pb[i] - mb);
      va /= n, vb /= n, cov /= n;
      total += ((2 * ma * mb + c1) * (2 * cov + c2)) / ((ma * ma + mb * mb + c1) * (va + vb + c2));
      count++;
      continue;
    }
    for (int y = r; y < h - r; y++)
      for (int x = r; x < w - r; x++) {
        double ma = 0, mb = 0, saa = 0, sbb = 0, sab = 0;
        for (int dy = -r; dy <= r; dy++)
          for (int dx = -r; dx <= r; dx++) {
            const double wt = win[dy + R] * win[dx + R];
            const double va = pa[(y + dy) * w + x + dx], vb = pb[(y + dy) * w + x + dx];
            ma += wt * va, mb += wt * vb, saa += wt * va * va, sbb += wt * vb * vb,
                sab += wt * va * vb;
          }
        const double va = saa - ma * ma, vb = sbb - mb * mb, cov = sab - ma * mb;
        total +=
            ((2 * ma * mb + c1) * (2 * cov + c2)) / ((ma * ma + mb * mb + c1) * (va + vb + c2));
        count++;
      }
  }
  return count ? total / count : 1.0;
}

PerturbationOne perturbation_measure(const float *clean, const float *adv, int c, int h, int w) {
  const size_t per = (size_t)c * h * w;
  double mx = 0, sq = 0;
  for (size_t j = 0; j < per; j++) {
    const double d = (double)adv[j] - clean[j];
    mx = fmax(mx, fabs(d));
    sq += d * d;
  }
  return (PerturbationOne){mx, sqrt(sq), sq / per, image_ssim(clean, adv, c, h, w),
                           image_psnr(clean, adv, per)};
}

void perturbation_accumulate(PerturbationSum *s, const PerturbationOne *one) {
  s->linf += one->linf, s->l2 += one->l2, s->mse += one->mse, s->ssim += one->ssim;
  if (isfinite(one->psnr)) s->psnr += one->psnr, s->psnr_finite++;
  s->n++;
}

void perturbation_add(PerturbationSum *s, const float *clean, const float *adv, int c, int h,
                      int w) {
  const PerturbationOne one = perturbation_measure(clean, adv, c, h, w);
  perturbation_accumulate(s, &one);
}

double image_psnr(const float *a, const float *b, size_t n) {
  double mse = 0;
  for (size_t i = 0; i < n; i++) mse += (double)(a[i] - b[i]) * (a[i] - b[i]);
  mse /= (double)n;
  return mse > 0 ? 10.0 * log10(1.0 / mse) : INFINITY;
}
