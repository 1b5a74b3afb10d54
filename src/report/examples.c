/* Example images for the report: clean, adversarial and amplified difference
 * PNGs under one attack (paper 001 Fig. 1), chosen among the first images
 * as those the attack actually flipped (clean-correct, then wrong) and,
 * separately, a few it did not; each with its file and class names, listed in
 * DIR/examples.json. */
#include <stdio.h>
#include <stdlib.h>

#include "report.h"

#define EXAMPLE_POOL 256 /* images attacked to find the examples among */

/* The PNGs and JSON entry of pool image i as example number `at`. */
static Status write_one(Net *net, const Dataset *d, int i, int at, const float *adv,
                        const float *pc, const float *pa, float amp, float *diff, int flipped,
                        const char *dir, cJSON *list, MrError *err) {
  const int k = net_num_classes(net);
  const size_t per = (size_t)d->c * d->h * d->w;
  const int scale = d->h < 64 ? 4 : d->h < 128 ? 2 : 1;
  char path[4300], name[3][64], buf[3][16], id[64];
  const char *kinds[3] = {"clean", "adv", "diff"};
  for (size_t p = 0; p < per; p++)
    diff[p] = 0.5f + amp * (adv[per * i + p] - d->images[per * i + p]);
  const float *src[3] = {d->images + per * i, adv + per * i, diff};
  Status s = STATUS_OK;
  for (int t = 0; s == STATUS_OK && t < 3; t++) {
    snprintf(name[t], sizeof name[t], "images/example_%03d_%s.png", at, kinds[t]);
    snprintf(path, sizeof path, "%s/%s", dir, name[t]);
    s = image_write_png(path, src[t], d->c, d->h, d->w, scale, err);
  }
  const int cp = argmax(pc + (size_t)i * k, k), ap = argmax(pa + (size_t)i * k, k);
  cJSON *e = cJSON_CreateObject();
  cJSON_AddNumberToObject(e, "index", i);
  cJSON_AddStringToObject(e, "file", dataset_image_id(d, i, id, sizeof id));
  cJSON_AddBoolToObject(e, "flipped", flipped);
  cJSON_AddStringToObject(e, "label", net_class_name(net, d->labels[i], buf[0]));
  cJSON_AddStringToObject(e, "clean_prediction", net_class_name(net, cp, buf[1]));
  cJSON_AddNumberToObject(e, "clean_probability", pc[(size_t)i * k + cp]);
  cJSON_AddStringToObject(e, "adversarial_prediction", net_class_name(net, ap, buf[2]));
  cJSON_AddNumberToObject(e, "adversarial_probability", pa[(size_t)i * k + ap]);
  cJSON_AddStringToObject(e, "clean_png", name[0]);
  cJSON_AddStringToObject(e, "adversarial_png", name[1]);
  cJSON_AddStringToObject(e, "difference_png", name[2]);
  cJSON_AddItemToArray(list, e);
  return s;
}

Status examples_write(Net *net, const Dataset *d, const AttackOptions *o, int count,
                      const char *dir, MrError *err) {
  const int pool = d->n < EXAMPLE_POOL ? d->n : EXAMPLE_POOL;
  if (count <= 0 || pool <= 0) return STATUS_OK;
  for (int i = 0; i < pool; i++)
    if (d->labels[i] < 0) return STATUS_OK; /* unlabelled: nothing is "flipped" */
  Status s = report_make_dir(dir, "images", err);
  if (s != STATUS_OK) return s;
  const int k = net_num_classes(net), batch = 64;
  const size_t per = (size_t)d->c * d->h * d->w;
  float *adv = malloc(sizeof(float) * per * pool), *pc = malloc(sizeof(float) * k * pool);
  float *pa = malloc(sizeof(float) * k * pool), *diff = malloc(sizeof(float) * per);
  s = adv && pc && pa && diff ? STATUS_OK : mr_error_set(err, STATUS_ERR_NOMEM, "out of memory");
  for (int start = 0; s == STATUS_OK && start < pool; start += batch) {
    const int b = pool - start < batch ? pool - start : batch;
    const AttackOptions at = attack_at(o, start);
    s = attack_run(net, &at, d->images + per * start, d->labels + start, b, adv + per * start, err);
    if (s == STATUS_OK) {
      net_predict(net, d->images + per * start, b, pc + (size_t)k * start);
      net_predict(net, adv + per * start, b, pa + (size_t)k * start);
    }
  }
  cJSON *root = cJSON_CreateObject();
  cJSON_AddStringToObject(root, "attack", attack_name(o->kind));
  cJSON_AddNumberToObject(root, "eps", o->eps);
  cJSON_AddStringToObject(root, "norm", o->norm == NORM_LINF ? "linf" : "l2");
  cJSON_AddNumberToObject(root, "bits", d->bits);
  const float amp = o->eps > 0 && attack_is_bounded(o->kind) ? 0.5f / o->eps : 10.0f;
  cJSON_AddNumberToObject(root, "difference_gain", amp);
  cJSON_AddNumberToObject(root, "searched", pool);
  cJSON *list = cJSON_AddArrayToObject(root, "examples");
  /* the flipped ones first, then up to half as many that held */
  int at = 0, flipped = 0, held = 0;
  const int want_held = count / 2 > 1 ? count / 2 : 1;
  for (int pass = 0; pass < 2; pass++)
    for (int i = 0; s == STATUS_OK && i < pool; i++) {
      const int y = d->labels[i], ok_clean = argmax(pc + (size_t)i * k, k) == y;
      const int ok_adv = argmax(pa + (size_t)i * k, k) == y;
      if (!ok_clean) continue;
      if (pass == 0 && !ok_adv && flipped < count) {
        s = write_one(net, d, i, at++, adv, pc, pa, amp, diff, 1, dir, list, err);
        flipped++;
      } else if (pass == 1 && ok_adv && held < want_held) {
        s = write_one(net, d, i, at++, adv, pc, pa, amp, diff, 0, dir, list, err);
        held++;
      }
    }
  cJSON_AddNumberToObject(root, "flipped", flipped);
  cJSON_AddNumberToObject(root, "held", held);
  if (s == STATUS_OK) s = report_write_json(dir, "examples.json", root, err);
  cJSON_Delete(root);
  free(adv), free(pc), free(pa), free(diff);
  return s;
}
