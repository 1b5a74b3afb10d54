/* Example images for the report: clean, adversarial and amplified difference
 * PNGs of the first images under one attack, with their predictions, listed
 * in DIR/examples.json (paper 001 Fig. 1). */
#include <stdio.h>
#include <stdlib.h>

#include "report.h"

Status examples_write(Net *net, const Dataset *d, const AttackOptions *o, int count,
                      const char *dir, MrError *err) {
  if (count > d->n) count = d->n;
  if (count <= 0) return STATUS_OK;
  Status s = report_make_dir(dir, "images", err);
  if (s != STATUS_OK) return s;
  const int k = net_num_classes(net);
  const size_t per = (size_t)d->c * d->h * d->w;
  float *adv = malloc(sizeof(float) * per * count), *pc = malloc(sizeof(float) * k * count);
  float *pa = malloc(sizeof(float) * k * count), *diff = malloc(sizeof(float) * per);
  s = adv && pc && pa && diff ? attack_run(net, o, d->images, d->labels, count, adv, err)
                              : mr_error_set(err, STATUS_ERR_NOMEM, "out of memory");
  cJSON *root = cJSON_CreateObject();
  if (s == STATUS_OK) {
    net_predict(net, d->images, count, pc);
    net_predict(net, adv, count, pa);
    cJSON_AddStringToObject(root, "attack", attack_name(o->kind));
    cJSON_AddNumberToObject(root, "eps", o->eps);
    cJSON_AddStringToObject(root, "norm", o->norm == NORM_LINF ? "linf" : "l2");
    const float amp = o->eps > 0 && attack_is_bounded(o->kind) ? 0.5f / o->eps : 10.0f;
    cJSON_AddNumberToObject(root, "difference_gain", amp);
    cJSON *list = cJSON_AddArrayToObject(root, "examples");
    const int scale = d->h < 64 ? 4 : d->h < 128 ? 2 : 1;
    for (int i = 0; s == STATUS_OK && i < count; i++) {
      char path[4300], name[3][64], buf[3][16];
      const char *kinds[3] = {"clean", "adv", "diff"};
      for (size_t p = 0; p < per; p++)
        diff[p] = 0.5f + amp * (adv[per * i + p] - d->images[per * i + p]);
      const float *src[3] = {d->images + per * i, adv + per * i, diff};
      for (int t = 0; s == STATUS_OK && t < 3; t++) {
        snprintf(name[t], sizeof name[t], "images/example_%03d_%s.png", i, kinds[t]);
        snprintf(path, sizeof path, "%s/%s", dir, name[t]);
        s = image_write_png(path, src[t], d->c, d->h, d->w, scale, err);
      }
      const int cp = argmax(pc + (size_t)i * k, k), ap = argmax(pa + (size_t)i * k, k);
      cJSON *e = cJSON_CreateObject();
      cJSON_AddNumberToObject(e, "index", i);
      cJSON_AddStringToObject(e, "label", net_class_name(net, d->labels[i], buf[0]));
      cJSON_AddStringToObject(e, "clean_prediction", net_class_name(net, cp, buf[1]));
      cJSON_AddNumberToObject(e, "clean_probability", pc[(size_t)i * k + cp]);
      cJSON_AddStringToObject(e, "adversarial_prediction", net_class_name(net, ap, buf[2]));
      cJSON_AddNumberToObject(e, "adversarial_probability", pa[(size_t)i * k + ap]);
      cJSON_AddStringToObject(e, "clean_png", name[0]);
      cJSON_AddStringToObject(e, "adversarial_png", name[1]);
      cJSON_AddStringToObject(e, "difference_png", name[2]);
      cJSON_AddItemToArray(list, e);
    }
  }
  if (s == STATUS_OK) s = report_write_json(dir, "examples.json", root, err);
  cJSON_Delete(root);
  free(adv), free(pc), free(pa), free(diff);
  return s;
}
