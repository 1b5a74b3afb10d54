/* Console tables of results that more than one command prints. */
#include <stdio.h>

#include "cli.h"

void cli_print_sweep(const SweepResult *r, const Dataset *d, const char *model, const char *data,
                     const char *split) {
  const double step = data_grey_step(d->bits);
  printf("%s on %s (%s, %d images)", model, data, split, r->n);
  if (step > 0) printf("; %d-bit data: one grey level is %.3g", d->bits, step);
  printf("\nclean: accuracy %.2f%%, balanced accuracy %.2f%%", 100 * r->clean_accuracy,
         100 * r->clean_balanced_accuracy);
  if (r->clean_auc >= 0) printf(", AUC %.3f", r->clean_auc);
  printf("; a constant '%s' would score %.2f%% accuracy, 50%% balanced\n",
         sweep_class_name(r, r->majority_class), 100 * r->majority_share);
  if (r->positive >= 0)
    printf("positive class '%s': %d of %d found on clean images\n",
           sweep_class_name(r, r->positive), r->clean_detected, r->positives);
  const double hu = d->window.width; /* modality units per unit of [0,1] */
  printf("\n%-14s %9s %7s %9s %8s %6s %9s %8s %9s %7s %7s %6s\n", "attack", "eps",
         hu > 0 ? "HU" : "grey", "accuracy", "bal.acc", "AUC", r->positive >= 0 ? "found" : "-",
         "success", "mean_linf", "SSIM", "PSNR", "conf");
  for (int i = 0; i < r->n_rows; i++) {
    const SweepRow *w = &r->rows[i];
    char grey[24] = "-", found[24] = "-";
    if (hu > 0)
      snprintf(grey, sizeof grey, "%.3g", w->eps * hu);
    else if (step > 0 && w->norm == NORM_LINF)
      snprintf(grey, sizeof grey, "%.3g%s", w->eps / step, w->eps < step ? "*" : "");
    if (r->positive >= 0)
      snprintf(found, sizeof found, "%d/%d", w->positives_detected, r->positives);
    printf("%-14s %9.4g %7s %8.2f%% %7.2f%% %6.3f %9s %7.1f%% %9.4f %7.4f %7.2f %6.3f\n", w->attack,
           w->eps, grey, 100 * w->accuracy, 100 * w->balanced_accuracy, w->auc, found,
           100 * w->success_rate, w->linf, w->ssim, w->psnr, w->confidence);
  }
  if (r->volumes_labelled) {
    printf(
        "\nper volume (%d volumes; the mean of each volume's slice probabilities, each slice "
        "attacked in its own eps ball)\n%-14s %9s %7s %9s\n%-14s %9s %7s %8.2f%%\n",
        r->volumes_labelled, "attack", "eps", hu > 0 ? "HU" : "", "accuracy", "clean", "0", "",
        100.0 * r->clean_volume_correct / r->volumes_labelled);
    for (int i = 0; i < r->n_rows; i++) {
      const SweepRow *w = &r->rows[i];
      char units[24] = "";
      if (hu > 0) snprintf(units, sizeof units, "%.3g", w->eps * hu);
      printf("%-14s %9.4g %7s %8.2f%%\n", w->attack, w->eps, units,
             100.0 * w->volume_correct / r->volumes_labelled);
    }
  }
  if (r->carried)
    printf(
        "eps carried: an image fooled at a smaller eps counts as fooled at the larger ones (its "
        "example lies in their ball) and is not attacked again (--fresh-eps: every eps anew)\n");
  if (hu > 0) {
    char text[96];
    window_describe(&d->window, text, sizeof text);
    printf("HU: eps in modality units through the window %s\n", text);
  } else if (step > 0)
    printf(
        "grey: eps in grey levels of the stored data; * below one level: such a perturbation "
        "does not survive saving as %d-bit\n",
        d->bits);
}
