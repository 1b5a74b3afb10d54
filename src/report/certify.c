/* certify's outputs: certify.json (options, the certified-accuracy curve beside the PGD-L2
 * one, every image by index and anonymous id), certify.csv (a row per image, naming its
 * file), and the report's section on them. */
#include <math.h>
#include <stdlib.h>

#include "report.h"

Status certify_write(const CertifyReport *r, const Dataset *d, const Net *net, const char *dir,
                     MrError *err) {
  int *labels = malloc(sizeof(int) * (r->n + 1));
  cJSON *root = cJSON_CreateObject();
  if (!labels || !root) {
    free(labels), cJSON_Delete(root);
    return mr_error_set(err, STATUS_ERR_NOMEM, "out of memory writing certify.json");
  }
  int abstained = 0, right = 0, labelled = 0;
  for (int i = 0; i < r->n; i++) {
    labels[i] = d->labels[r->pick[i]];
    abstained += r->certs[i].predicted == SMOOTH_ABSTAIN;
    if (labels[i] >= 0) labelled++, right += r->certs[i].predicted == labels[i];
  }
  cJSON_AddStringToObject(root, "kind", "certify");
  cJSON_AddStringToObject(root, "method", "randomized smoothing (Cohen et al. 2019)");
  cJSON_AddStringToObject(root, "model", r->model);
  cJSON_AddStringToObject(root, "data", r->data);
  cJSON_AddStringToObject(root, "split", r->split);
  cJSON_AddStringToObject(root, "arch", net_spec(net)->arch);
  json_add_number(root, "sigma", r->options.sigma);
  cJSON_AddNumberToObject(root, "n0", r->options.n0);
  cJSON_AddNumberToObject(root, "n", (double)r->options.n);
  json_add_number(root, "alpha", r->options.alpha);
  cJSON_AddNumberToObject(root, "seed", (double)r->options.seed);
  cJSON_AddNumberToObject(root, "every", r->every);
  cJSON_AddNumberToObject(root, "images", r->n);
  cJSON_AddNumberToObject(root, "labelled", labelled);
  cJSON_AddNumberToObject(root, "abstained", abstained);
  json_add_number(root, "smoothed_accuracy", labelled ? (double)right / labelled : NAN);
  cJSON_AddNumberToObject(root, "pgd_steps", r->empirical ? r->pgd_steps : 0);
  json_add_number(root, "seconds", r->elapsed);
  cJSON *curve = cJSON_AddArrayToObject(root, "curve");
  for (int k = 0; k < r->n_radii; k++) {
    cJSON *p = cJSON_CreateObject();
    json_add_number(p, "radius", r->radii[k]);
    json_add_number(p, "certified_accuracy",
                    smooth_certified_accuracy(r->certs, labels, r->n, r->radii[k]));
    json_add_number(p, "pgd_l2_accuracy", r->empirical ? r->empirical[k] : NAN);
    cJSON_AddItemToArray(curve, p);
  }
  cJSON *items = cJSON_AddArrayToObject(root, "items");
  ReportText csv = {0};
  report_text_add(&csv, "file,id,true,predicted,radius,p_lower,count,selected,seconds\n");
  char buf[16], id[64];
  for (int i = 0; i < r->n; i++) {
    const SmoothCertificate *c = &r->certs[i];
    cJSON *it = cJSON_CreateObject();
    cJSON_AddNumberToObject(it, "index", r->pick[i]);
    cJSON_AddStringToObject(it, "id", dataset_image_hash(d, r->pick[i], id, sizeof id));
    cJSON_AddNumberToObject(it, "label", labels[i]);
    cJSON_AddNumberToObject(it, "predicted", c->predicted);
    json_add_number(it, "radius", c->radius);
    json_add_number(it, "p_lower", c->p_lower);
    cJSON_AddNumberToObject(it, "count", (double)c->count);
    cJSON_AddItemToArray(items, it);
    report_text_field(&csv, dataset_image_id(d, r->pick[i], id, sizeof id));
    report_text_add(&csv, ",%s,", dataset_image_hash(d, r->pick[i], id, sizeof id));
    report_text_field(&csv, labels[i] >= 0 ? net_class_name(net, labels[i], buf) : "");
    report_text_add(&csv, ",");
    report_text_field(
        &csv, c->predicted == SMOOTH_ABSTAIN ? "abstain" : net_class_name(net, c->predicted, buf));
    report_text_add(&csv, ",%.6g,%.6g,%ld,", c->radius, c->p_lower, c->count);
    report_text_field(&csv, net_class_name(net, c->selected, buf));
    report_text_add(&csv, ",%.3f\n", r->seconds[i]);
  }
  Status st = report_write_json(dir, "certify.json", root, err);
  if (st == STATUS_OK) st = report_text_write(&csv, dir, "certify.csv", err);
  free(csv.buf);
  cJSON_Delete(root);
  free(labels);
  return st;
}

void report_certify_section(FILE *o, const cJSON *c) {
  const cJSON *curve = cJSON_GetObjectItemCaseSensitive(c, "curve"), *p;
  fprintf(
      o,
      "<h2 id='certify'>Certified robustness (randomized smoothing)</h2><p>%.0f images of "
      "the %s split (one in %.0f); Gaussian noise of sigma %g on the [0,1] pixels, n0 = %.0f, n = "
      "%.0f, alpha = %g (Cohen et al. 2019). The smoothed model abstained on %.0f images. "
      "<b>Certified</b>: the share of images the smoothed model gets right with a "
      "guarantee that no change of that L2 size alters its answer (each guarantee wrong "
      "with probability at most alpha): a lower bound on its accuracy under any attack. "
      "<b>PGD-L2</b>: the base model's accuracy under one attack of that size, an upper "
      "bound on its robustness.</p>\n",
      report_num(c, "images"), report_html(report_str(c, "split")), report_num(c, "every"),
      report_num(c, "sigma"), report_num(c, "n0"), report_num(c, "n"), report_num(c, "alpha"),
      report_num(c, "abstained"));
  fprintf(o,
          "<table><tr><th>L2 radius</th><th>certified (smoothed)</th><th>PGD-L2 (base)</th>"
          "</tr>\n");
  Series s[2] = {{.name = "certified (smoothed model)"}, {.name = "PGD-L2 (base model)"}};
  cJSON_ArrayForEach(p, curve) {
    const double r = report_num(p, "radius"), a = report_num(p, "certified_accuracy"),
                 e = report_num(p, "pgd_l2_accuracy");
    fprintf(o, "<tr><td>%.3g</td><td>%.2f%%</td>", r, 100 * a);
    if (isfinite(e))
      fprintf(o, "<td>%.2f%%</td></tr>\n", 100 * e);
    else
      fprintf(o, "<td>-</td></tr>\n");
    if (s[0].n < 64 && isfinite(a)) s[0].x[s[0].n] = r, s[0].y[s[0].n++] = a;
    if (s[1].n < 64 && isfinite(e)) s[1].x[s[1].n] = r, s[1].y[s[1].n++] = e;
  }
  fprintf(o, "</table>\n");
  const Chart chart = {.title = "accuracy against the L2 radius",
                       .xlabel = "L2 radius ([0,1] pixels)",
                       .ylabel = "accuracy"};
  if (s[0].n > 1) report_svg_chart(o, &chart, s, s[1].n > 1 ? 2 : 1);
}
