/* Progress on the terminal: a bar with ETA redrawn in place on a TTY; a
 * quiet line per epoch (training) or every PROGRESS_LINE_SECONDS and at each
 * new step (attacks, triage, compare) otherwise, so a log never goes silent
 * for minutes. */
#include <omp.h>
#include <stdio.h>
#include <string.h>
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

#define PROGRESS_LINE_SECONDS 10.0

void cli_progress_init(CliProgress *p, int quiet) {
  memset(p, 0, sizeof *p);
  p->quiet = quiet;
  p->start = omp_get_wtime();
  p->tty = isatty(fileno(stderr));
}

void cli_progress_done(CliProgress *p) {
  if (!p->quiet && p->tty && p->drawn) fprintf(stderr, "\r\033[K");
  p->drawn = 0;
}

void cli_sweep_progress(const char *what, int done, int total, void *ctx) {
  CliProgress *p = ctx;
  if (p->quiet || total <= 0) return;
  const double now = omp_get_wtime(), elapsed = now - p->start;
  const double frac = done < 0 ? 0 : done > total ? 1 : (double)done / total;
  const int new_step = strncmp(p->what, what, sizeof p->what - 1) != 0;
  if (!p->tty && !new_step && now - p->last < PROGRESS_LINE_SECONDS) return;
  snprintf(p->what, sizeof p->what, "%s", what);
  p->last = now;
  char eta_text[32] = "?", elapsed_text[32];
  if (frac > 0.01 && elapsed > 1) format_time(eta_text, sizeof eta_text, elapsed / frac - elapsed);
  format_time(elapsed_text, sizeof elapsed_text, elapsed);
  if (p->tty) {
    char bar[31];
    for (int i = 0; i < 30; i++) bar[i] = i < (int)(30 * frac) ? '#' : '.';
    bar[30] = 0;
    fprintf(stderr, "\r\033[K[%s] %3.0f%%  %s  [%s, ETA %s]", bar, 100 * frac, what, elapsed_text,
            eta_text);
    p->drawn = 1;
  } else {
    fprintf(stderr, "%3.0f%%  %s  [%s, ETA %s]\n", 100 * frac, what, elapsed_text, eta_text);
  }
  fflush(stderr);
}
