/* Training progress on the terminal: a bar with loss, accuracy and ETA
 * redrawn in place on a TTY; one quiet line per epoch otherwise. */
#include <stdio.h>
#include <unistd.h>

#include "cli.h"

static void format_time(char *buf, size_t n, double seconds) {
  const int s = seconds < 0 ? 0 : (int)(seconds + 0.5);
  if (s >= 3600)
    snprintf(buf, n, "%d:%02d:%02d", s / 3600, s / 60 % 60, s % 60);
  else
    snprintf(buf, n, "%d:%02d", s / 60, s % 60);
}

void cli_train_progress(const TrainProgress *p, void *ctx) {
  const int *quiet = ctx;
  if (quiet && *quiet) return;
  const int tty = isatty(fileno(stderr));
  const double done = (p->epoch - 1) + (double)p->step / p->steps;
  const double eta = done > 0 ? p->elapsed / done * (p->epochs - done) : 0;
  char eta_text[32], elapsed_text[32];
  format_time(eta_text, sizeof eta_text, eta);
  format_time(elapsed_text, sizeof elapsed_text, p->elapsed);
  if (p->val_acc >= 0) {
    char robust[64] = "";
    if (p->val_robust_acc >= 0)
      snprintf(robust, sizeof robust, "  robust %.1f%% (eps %.4g, adv %.2f)",
               100 * p->val_robust_acc, p->adv_eps, p->adv_ratio);
    fprintf(stderr,
            "%sepoch %d/%d  loss %.4f  train acc %.1f%%  val acc %.1f%%%s%s  [%s, ETA %s]\n",
            tty ? "\r\033[K" : "", p->epoch, p->epochs, p->loss, 100 * p->acc, 100 * p->val_acc,
            robust, p->improved ? "  (best, saved)" : "", elapsed_text, eta_text);
    return;
  }
  if (!tty) return;
  char bar[31];
  const int filled = (int)(30.0 * p->step / p->steps);
  for (int i = 0; i < 30; i++) bar[i] = i < filled ? '#' : '.';
  bar[30] = 0;
  fprintf(stderr, "\r\033[Kepoch %d/%d [%s] %d/%d  loss %.4f  acc %.1f%%  ETA %s", p->epoch,
          p->epochs, bar, p->step, p->steps, p->loss, 100 * p->acc, eta_text);
  fflush(stderr);
}

void cli_sweep_progress(const char *what, int done, int total, void *ctx) {
  const int *quiet = ctx;
  if (*quiet) return;
  fprintf(stderr, "%s[%d/%d] %s%s", isatty(fileno(stderr)) ? "\r\033[K" : "",
          done + 1 > total ? total : done + 1, total, what, isatty(fileno(stderr)) ? "" : "\n");
  fflush(stderr);
}
