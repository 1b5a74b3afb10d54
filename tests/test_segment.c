/* Segmentation: Dice / IoU against hand-computed cases, the segmentation
 * readers (phantom, .npz, image folders, the real HC18 and OASIS sets) and
 * their errors, training a small U-Net on the phantom, and the attacks on it:
 * DAG reaching target types A/B/C inside [0,1], PGD lowering Dice inside its
 * eps ball and raising its loss. */
#include <sys/stat.h>
#include <unistd.h>

#include "testutil.h"

#define SHARED "../shared/data"

static void test_dice_hand_computed(void **state) {
  (void)state;
  /* image 0: 4 pixels; truth 0 1 1 2, prediction 0 1 2 2
   *   class 1: pred {1}, truth {1,2}: Dice 2*1/3, IoU 1/2
   *   class 2: pred {2,3}, truth {3}: Dice 2*1/3, IoU 1/2
   * image 1: truth and prediction all background: no foreground, Dice 1 */
  const int truth[8] = {0, 1, 1, 2, 0, 0, 0, 0};
  const int pred[8] = {0, 1, 2, 2, 0, 0, 0, 0};
  SegMetrics m;
  MrError err = {0};
  assert_int_equal(seg_metrics_compute(&m, pred, truth, 2, 4, 3, &err), STATUS_OK);
  assert_true(fabs(m.dice[1] - 2.0 / 3) < 1e-12 && fabs(m.dice[2] - 2.0 / 3) < 1e-12);
  assert_true(fabs(m.iou[1] - 0.5) < 1e-12 && fabs(m.iou[2] - 0.5) < 1e-12);
  assert_true(fabs(m.dice[0] - 1.0) < 1e-12); /* background: both {0} */
  assert_true(isnan(m.dice[3 + 1]) && isnan(m.dice[3 + 2]));
  assert_true(fabs(m.image_dice[0] - 2.0 / 3) < 1e-12);
  assert_true(fabs(m.image_dice[1] - 1.0) < 1e-12);
  assert_true(fabs(m.mean_dice - (2.0 / 3 + 1.0) / 2) < 1e-12);
  assert_true(fabs(m.image_pixel_acc[0] - 0.75) < 1e-12);
  assert_true(fabs(m.pixel_accuracy - 7.0 / 8) < 1e-12);
  /* pooled: class 1 pred 1 px, truth 2 px, both 1 */
  assert_true(fabs(m.class_dice[1] - 2.0 / 3) < 1e-12);
  seg_metrics_free(&m);
  /* a missed structure scores 0, a hallucinated one too */
  const int t2[4] = {1, 1, 0, 0}, p2[4] = {0, 0, 0, 0}, p3[4] = {0, 0, 1, 0};
  assert_true(seg_image_dice(p2, t2, 4, 2) == 0.0);
  assert_true(seg_image_dice(p3, p2, 4, 2) == 0.0);
  assert_true(seg_image_dice(t2, t2, 4, 2) == 1.0);
  assert_int_not_equal(seg_metrics_compute(&m, pred, truth, 0, 4, 3, &err), STATUS_OK);
}

static void test_phantom_segment(void **state) {
  (void)state;
  MrError err = {0};
  DataSplits *d = phantom_generate_segment(28, 200, 5, &err);
  assert_non_null(d);
  assert_true(d->segment && d->n_classes == 3);
  assert_string_equal(d->class_names[0], "background");
  long count[3] = {0};
  double mean[3] = {0};
  const Dataset *t = &d->split[SPLIT_TRAIN];
  for (size_t i = 0; i < (size_t)t->n * 28 * 28; i++) {
    assert_true(t->masks[i] >= 0 && t->masks[i] <= 2);
    count[t->masks[i]]++, mean[t->masks[i]] += t->images[i];
  }
  assert_true(count[1] > 0 && count[2] > 0 && count[0] > count[1]);
  /* lesions are brighter than the tissue around them: the masks mark them */
  assert_true(mean[1] / count[1] > mean[0] / count[0] + 0.1);
  assert_true(mean[2] / count[2] > mean[0] / count[0] + 0.1);
  data_free(d);
}

static void test_npz_roundtrip_and_resize(void **state) {
  (void)state;
  char dir[64], path[128];
  assert_int_equal(make_temp_dir(dir, sizeof dir, "seg"), 0);
  snprintf(path, sizeof path, "%s/seg.npz", dir);
  MrError err = {0};
  DataSplits *d = phantom_generate_segment(28, 40, 2, &err);
  assert_int_equal(data_save_npz(d, path, &err), STATUS_OK);
  DataSplits *e = data_load(path, NULL, &err);
  assert_non_null(e);
  assert_true(e->segment && e->n_classes == 3);
  for (int s = 0; s < SPLIT_COUNT; s++) {
    assert_int_equal(e->split[s].n, d->split[s].n);
    assert_memory_equal(e->split[s].masks, d->split[s].masks,
                        sizeof(int) * d->split[s].n * 28 * 28);
  }
  data_free(e);
  /* resized: label ids stay label ids (nearest neighbour, never averaged) */
  DataOptions opt = {.size = 56};
  e = data_load(path, &opt, &err);
  assert_non_null(e);
  const Dataset *a = &d->split[SPLIT_TEST], *b = &e->split[SPLIT_TEST];
  assert_int_equal(b->h, 56);
  for (int i = 0; i < a->n; i++)
    for (int y = 0; y < 56; y++)
      for (int x = 0; x < 56; x++)
        assert_int_equal(b->masks[(size_t)i * 56 * 56 + y * 56 + x],
                         a->masks[(size_t)i * 28 * 28 + (y / 2) * 28 + x / 2]);
  data_free(e);
  /* a label id out of range is an error naming where it is */
  opt = (DataOptions){.n_classes = 2};
  assert_null(data_load(path, &opt, &err));
  assert_non_null(strstr(err.msg, "label id 2 is out of range"));
  data_free(d);
  remove_dir(dir);
}

/* root/images/ID.png + root/masks/ID.png from float maps (0..1 -> 0..255). */
static void write_pair(const char *root, const char *id, const float *img, const float *mask, int h,
                       int w, int mh, int mw) {
  char p[512];
  MrError err = {0};
  snprintf(p, sizeof p, "%s/images/%s.png", root, id);
  assert_int_equal(image_write_png(p, img, 1, h, w, 1, &err), STATUS_OK);
  snprintf(p, sizeof p, "%s/masks/%s.png", root, id);
  assert_int_equal(image_write_png(p, mask, 1, mh, mw, 1, &err), STATUS_OK);
}

static void test_folder_masks(void **state) {
  (void)state;
  char dir[64], sub[128];
  assert_int_equal(make_temp_dir(dir, sizeof dir, "segdir"), 0);
  snprintf(sub, sizeof sub, "%s/images", dir);
  mkdir(sub, 0755);
  snprintf(sub, sizeof sub, "%s/masks", dir);
  mkdir(sub, 0755);
  float img[16 * 24], mask[16 * 24];
  for (int n = 0; n < 10; n++) {
    for (int i = 0; i < 16 * 24; i++) {
      img[i] = (float)((i * 7 + n) % 255) / 255.0f;
      mask[i] = (i % 24) >= 12 ? 1.0f : 0.0f; /* right half foreground, stored 255 */
    }
    char id[16];
    snprintf(id, sizeof id, "case%02d", n);
    write_pair(dir, id, img, mask, 16, 24, 16, 24);
  }
  MrError err = {0};
  DataOptions opt = {.size = 16, .fit = FIT_STRETCH, .seed = 1};
  DataSplits *d = data_load(dir, &opt, &err);
  assert_non_null(d);
  assert_true(d->segment && d->binary_masks && d->n_classes == 2);
  int total = 0;
  for (int s = 0; s < SPLIT_COUNT; s++) total += d->split[s].n;
  assert_int_equal(total, 10);
  const Dataset *t = &d->split[SPLIT_TRAIN];
  assert_true(t->n > 0);
  for (int y = 0; y < 16; y++)
    for (int x = 0; x < 16; x++) assert_int_equal(t->masks[y * 16 + x], x >= 8);
  data_free(d);
  /* a mask of another size than its image */
  write_pair(dir, "case99", img, mask, 16, 24, 12, 24);
  assert_null(data_load(dir, &opt, &err));
  assert_non_null(strstr(err.msg, "masks/case99.png is 24x12 but its image"));
  /* 255 beside other label ids */
  mask[5] = 2.0f / 255.0f;
  write_pair(dir, "case99", img, mask, 16, 24, 16, 24);
  assert_null(data_load(dir, &opt, &err));
  assert_non_null(strstr(err.msg, "255 beside label ids"));
  /* a missing mask */
  snprintf(sub, sizeof sub, "%s/masks/case99.png", dir);
  unlink(sub);
  assert_null(data_load(dir, &opt, &err));
  assert_non_null(strstr(err.msg, "has no mask"));
  remove_dir(dir);
}

static void test_real_sets(void **state) {
  (void)state;
  if (access(SHARED "/hc18_fetal_head/train/images", R_OK) != 0) {
    print_message("skipped: %s/hc18_fetal_head is absent (../shared beside the checkout)\n",
                  SHARED);
    skip();
  }
  MrError err = {0};
  DataOptions opt = {.size = 64, .seed = 1};
  DataSplits *d = data_load(SHARED "/hc18_fetal_head", &opt, &err);
  if (!d) fail_msg("%s", err.msg);
  assert_true(d->segment && d->binary_masks && d->n_classes == 2);
  assert_int_equal(d->split[SPLIT_TEST].n, 199);
  assert_int_equal(d->split[SPLIT_TRAIN].n + d->split[SPLIT_VAL].n, 799);
  assert_int_equal(d->split[SPLIT_VAL].n, 80);
  long fg = 0, all = 0;
  const Dataset *t = &d->split[SPLIT_TEST];
  for (size_t i = 0; i < (size_t)t->n * 64 * 64; i++) fg += t->masks[i], all++;
  /* PROVENANCE: 30.6% of the test pixels are fetal head */
  assert_true(fabs((double)fg / all - 0.306) < 0.01);
  data_free(d);
  /* the five OASIS slices: (N,1,1,H,W) float64 images, (N,1,H,W) labels 0..14 */
  if (access(SHARED "/oasis_slices/img.npy", R_OK) != 0) {
    print_message("skipped: %s/oasis_slices is absent\n", SHARED);
    skip();
  }
  DataOptions keep = {0};
  d = data_load(SHARED "/oasis_slices", &keep, &err);
  if (!d) fail_msg("%s", err.msg);
  assert_int_equal(d->n_classes, 15);
  assert_int_equal(d->split[SPLIT_TEST].n, 5);
  assert_int_equal(d->split[SPLIT_TEST].h, 256);
  long count13 = 0;
  for (size_t i = 0; i < 5 * 256 * 256; i++) count13 += d->split[SPLIT_TEST].masks[i] == 13;
  assert_int_equal(count13, 17835); /* the README's pixel count of label 13 */
  data_free(d);
}

/* A small U-Net trained on the 28x28 segmentation phantom, shared by the
 * attack tests. */
static Net *trained;
static DataSplits *phantom;

static int setup_trained(void **state) {
  (void)state;
  MrError err = {0};
  mr_set_threads(2);
  phantom = phantom_generate_segment(28, 600, 11, &err);
  ModelSpec spec = model_spec_default("unet", 1, 28, 28, 3);
  spec.depth = 2, spec.base = 8, spec.seg_loss = SEG_LOSS_XENT_DICE;
  trained = model_build(&spec, 4, &err);
  model_spec_free(&spec);
  if (!phantom || !trained) return -1;
  char dir[64], out[128];
  make_temp_dir(dir, sizeof dir, "segtrain");
  snprintf(out, sizeof out, "%s/unet.safetensors", dir);
  TrainOptions o = train_options_default();
  o.epochs = 25, o.batch = 32, o.lr = 1e-2f, o.out = out, o.balance = BALANCE_LOSS;
  TrainResult res;
  if (train_run(trained, phantom, &o, NULL, NULL, &res, &err) != STATUS_OK) {
    fprintf(stderr, "%s\n", err.msg);
    return -1;
  }
  net_free(trained);
  trained = safetensors_load_net(out, &err); /* the best epoch, through a model file */
  remove_dir(dir);
  return trained ? 0 : -1;
}

static int teardown_trained(void **state) {
  (void)state;
  net_free(trained);
  data_free(phantom);
  return 0;
}

static void test_trained_unet_segments(void **state) {
  (void)state;
  const Dataset *t = &phantom->split[SPLIT_TEST];
  int *pred = malloc(sizeof(int) * t->n * 28 * 28);
  MrError err = {0};
  assert_int_equal(net_segment_dataset(trained, t, 64, pred, &err), STATUS_OK);
  SegMetrics m;
  assert_int_equal(seg_metrics_compute(&m, pred, t->masks, t->n, 28 * 28, 3, &err), STATUS_OK);
  /* lesions found: far above an all-background answer (Dice 0 on every lesion) */
  if (m.mean_dice < 0.6) fail_msg("clean mean Dice %.3f", m.mean_dice);
  seg_metrics_free(&m);
  free(pred);
}

static void test_dag_reaches_targets(void **state) {
  (void)state;
  const Dataset *t = &phantom->split[SPLIT_TEST];
  const int B = 8, P = 28 * 28;
  int *clean = malloc(sizeof(int) * B * P), *target = malloc(sizeof(int) * B * P);
  int *pred = malloc(sizeof(int) * B * P);
  float *adv = malloc(sizeof(float) * B * P);
  MrError err = {0};
  const DagTargetOptions to = dag_target_options_default();
  for (int ty = 0; ty < DAG_TARGET_COUNT; ty++) {
    seg_dag_targets(trained, t->images, B, 0, (DagTarget)ty, &to, 1, clean, target);
    AttackOptions o = attack_options_default(ATTACK_DAG);
    o.target = TARGET_MASK, o.target_mask = target;
    o.iters = 1000; /* the reference's 200 steps of 0.5/255 stop short on this tiny net */
    assert_int_equal(attack_run(trained, &o, t->images, t->masks, B, adv, &err), STATUS_OK);
    net_segment(trained, adv, B, pred);
    long reached = 0, changed = 0, changed_reached = 0;
    for (int i = 0; i < B * P; i++) {
      assert_true(adv[i] >= 0.0f && adv[i] <= 1.0f);
      reached += pred[i] == target[i];
      if (target[i] != clean[i]) changed++, changed_reached += pred[i] == target[i];
    }
    /* the 99% stop rule on (nearly) every image; type B's scattered cells are the hardest */
    const double want = ty == DAG_TARGET_B ? 0.7 : 0.97;
    if ((double)reached / (B * P) < 0.97 || (double)changed_reached / changed < want)
      fail_msg("type %s: %.3f of the target, %.3f of %ld changed pixels", dag_target_name(ty),
               (double)reached / (B * P), (double)changed_reached / changed, changed);
    assert_true(changed > 0);
    /* with an eps it stays inside the ball */
    o.eps = 0.01f;
    assert_int_equal(attack_run(trained, &o, t->images, t->masks, B, adv, &err), STATUS_OK);
    assert_true(max_abs_diff(adv, t->images, (size_t)B * P) <= 0.01f + 1e-6);
  }
  /* DAG needs a target and a per-pixel model */
  AttackOptions o = attack_options_default(ATTACK_DAG);
  assert_int_not_equal(attack_run(trained, &o, t->images, t->masks, B, adv, &err), STATUS_OK);
  assert_non_null(strstr(err.msg, "needs a target"));
  free(clean), free(target), free(pred), free(adv);
}

static void test_pgd_lowers_dice(void **state) {
  (void)state;
  const Dataset *t = &phantom->split[SPLIT_TEST];
  MrError err = {0};
  AttackOptions o = attack_options_default(ATTACK_PGD);
  o.eps = 0.03f, o.iters = 10;
  double clean = 0, attacked = 0;
  AttackOptions none = o;
  none.eps = 0;
  assert_int_equal(seg_robust_dice(trained, t, &none, 64, &clean, &err), STATUS_OK);
  assert_int_equal(seg_robust_dice(trained, t, &o, 64, &attacked, &err), STATUS_OK);
  if (!(attacked < clean - 0.1)) fail_msg("Dice %.3f clean, %.3f under PGD", clean, attacked);
  /* the loss rises, the eps ball and [0,1] hold */
  const int B = 16, P = 28 * 28;
  float *adv = malloc(sizeof(float) * B * P), *dx = malloc(sizeof(float) * B * P);
  assert_int_equal(attack_run(trained, &o, t->images, t->masks, B, adv, &err), STATUS_OK);
  const float l0 = net_loss_and_input_grad(trained, t->images, t->masks, B, dx);
  const float l1 = net_loss_and_input_grad(trained, adv, t->masks, B, dx);
  assert_true(l1 > l0);
  assert_true(max_abs_diff(adv, t->images, (size_t)B * P) <= 0.03f + 1e-6);
  for (int i = 0; i < B * P; i++) assert_true(adv[i] >= 0.0f && adv[i] <= 1.0f);
  /* L2: inside its ball, and lower Dice too */
  AttackOptions l2 = o;
  l2.norm = NORM_L2, l2.eps = 1.0f;
  assert_int_equal(attack_run(trained, &l2, t->images, t->masks, B, adv, &err), STATUS_OK);
  for (int b = 0; b < B; b++) {
    double n2 = 0;
    for (int i = 0; i < P; i++) {
      const double e = adv[b * P + i] - t->images[b * P + i];
      n2 += e * e;
    }
    assert_true(sqrt(n2) <= 1.0 + 1e-4);
  }
  double l2_dice = 0;
  assert_int_equal(seg_robust_dice(trained, t, &l2, 64, &l2_dice, &err), STATUS_OK);
  assert_true(l2_dice < clean);
  /* FGSM too, and the classification-only attacks are refused */
  o.kind = ATTACK_FGSM;
  assert_int_equal(attack_run(trained, &o, t->images, t->masks, B, adv, &err), STATUS_OK);
  o.kind = ATTACK_DEEPFOOL;
  assert_int_not_equal(attack_run(trained, &o, t->images, t->masks, B, adv, &err), STATUS_OK);
  free(adv), free(dx);
}

static void test_seg_sweep(void **state) {
  (void)state;
  Dataset t = phantom->split[SPLIT_TEST];
  t.n = 24;
  const AttackKind kinds[1] = {ATTACK_PGD};
  const float eps[2] = {0.004f, 0.02f};
  SegSweepOptions o = {.attacks = kinds,
                       .n_attacks = 1,
                       .eps = eps,
                       .n_eps = 2,
                       .base = attack_options_default(ATTACK_PGD),
                       .dag = DAG_TARGETS_ALL,
                       .dag_o = attack_options_default(ATTACK_DAG),
                       .dag_targets = dag_target_options_default(),
                       .noise = 1,
                       .batch = 16};
  SegSweepResult r;
  MrError err = {0};
  assert_int_equal(seg_sweep(trained, &t, &o, NULL, NULL, &r, &err), STATUS_OK);
  assert_int_equal(r.n_rows, 2 + 3);
  assert_true(r.rows[1].dice <= r.rows[0].dice + 1e-9); /* larger eps, no better */
  assert_true(r.rows[1].dice < r.clean.mean_dice);
  for (int i = 2; i < 5; i++) {
    assert_int_equal(r.rows[i].dag_target, i - 2);
    if (!(r.rows[i].target_reached >= 0.9 && r.rows[i].changed_reached > 0.4))
      fail_msg("%s: %.3f of the target, %.3f of the changed pixels", r.rows[i].attack,
               r.rows[i].target_reached, r.rows[i].changed_reached);
    assert_true(r.rows[i].dice_vs_clean < 0.9);
    assert_true(r.rows[i].mse > 0 && r.rows[i].ssim < 1.0);
  }
  /* noise at the adversarial SSIM leaves the Dice far higher than the attacks (paper 002) */
  assert_int_equal(r.n_noise, 3);
  assert_true(fabs(r.noise[0].ssim - r.noise[0].ssim_target) < 0.05);
  assert_true(r.noise[0].dice > r.adv_mean_dice);
  seg_sweep_result_free(&r);
}

static void test_seg_triage(void **state) {
  (void)state;
  Dataset t = phantom->split[SPLIT_TEST];
  t.n = 16;
  TriageOptions o = triage_options_default();
  o.attack = attack_options_default(ATTACK_BIM); /* no random start: exact replays */
  o.eps_max = 0.1f, o.tol = 1e-3f, o.dice_threshold = 0.5f, o.flag_frac = 0.25f, o.batch = 8;
  SegTriageResult r;
  MrError err = {0};
  assert_int_equal(seg_triage_run(trained, &t, &o, NULL, NULL, &r, &err), STATUS_OK);
  assert_int_equal(r.n_flagged, 4);
  for (int i = 1; i < r.n; i++) assert_true(r.items[i].min_eps >= r.items[i - 1].min_eps);
  assert_true(isfinite(r.items[0].min_eps));
  /* replayed alone at its eps, the most fragile image's mask moves; just below, it does not */
  const SegTriageItem *it = &r.items[0];
  const int P = 28 * 28, k = 3;
  float adv[28 * 28];
  int clean[28 * 28], pred[28 * 28];
  const float *x = t.images + (size_t)P * it->index;
  net_segment(trained, x, 1, clean);
  o.attack.eps = it->min_eps;
  assert_int_equal(attack_run(trained, &o.attack, x, clean, 1, adv, &err), STATUS_OK);
  net_segment(trained, adv, 1, pred);
  assert_true(seg_image_dice(pred, clean, P, k) < 0.5);
  o.attack.eps = it->eps_below;
  if (o.attack.eps > 0) {
    assert_int_equal(attack_run(trained, &o.attack, x, clean, 1, adv, &err), STATUS_OK);
    net_segment(trained, adv, 1, pred);
    assert_true(seg_image_dice(pred, clean, P, k) >= 0.5);
  }
  assert_true(r.dice_aware >= 0 && r.dice_all > 0);
  seg_triage_free(&r);
}

/* PGD adversarial training of a segmentation net: runs, records what it did,
 * and keeps the epoch of best Dice under PGD. */
static void test_seg_adversarial_training(void **state) {
  (void)state;
  MrError err = {0};
  DataSplits *d = phantom_generate_segment(28, 200, 3, &err);
  ModelSpec spec = model_spec_default("segnet", 1, 28, 28, 3);
  spec.depth = 2, spec.base = 4;
  Net *net = model_build(&spec, 1, &err);
  model_spec_free(&spec);
  char dir[64], out[128];
  assert_int_equal(make_temp_dir(dir, sizeof dir, "segadv"), 0);
  snprintf(out, sizeof out, "%s/adv.safetensors", dir);
  TrainOptions o = train_options_default();
  o.epochs = 2, o.batch = 32, o.lr = 1e-2f, o.out = out, o.adv = ADV_PGD, o.adv_eps = 0.01f;
  o.adv_steps = 2, o.val_attack_steps = 2;
  TrainResult res;
  if (train_run(net, d, &o, NULL, NULL, &res, &err) != STATUS_OK) fail_msg("%s", err.msg);
  assert_true(res.adv_images > 0 && res.best_val_robust_acc >= 0);
  assert_true(fabs((double)res.adv_images / res.images - 0.5) < 0.01);
  Net *back = safetensors_load_net(out, &err);
  assert_non_null(back);
  assert_non_null(strstr(net_spec(back)->training, "val_robust_dice"));
  net_free(back), net_free(net), data_free(d);
  remove_dir(dir);
}

/* An interrupted segmentation run resumed from its checkpoint ends with the
 * same weights, bit for bit, as one that was never interrupted. */
static void test_seg_resume(void **state) {
  (void)state;
  MrError err = {0};
  DataSplits *d = phantom_generate_segment(28, 120, 9, &err);
  char dir[64], out[2][128], ckpt[2][160];
  assert_int_equal(make_temp_dir(dir, sizeof dir, "segres"), 0);
  Net *nets[2];
  for (int run = 0; run < 2; run++) {
    ModelSpec spec = model_spec_default("unet", 1, 28, 28, 3);
    spec.depth = 2, spec.base = 4;
    nets[run] = model_build(&spec, 5, &err);
    model_spec_free(&spec);
    snprintf(out[run], sizeof out[run], "%s/m%d.safetensors", dir, run);
    snprintf(ckpt[run], sizeof ckpt[run], "%s.ckpt", out[run]);
    TrainOptions o = train_options_default();
    o.epochs = 3, o.batch = 16, o.out = out[run], o.checkpoint = ckpt[run];
    o.balance = BALANCE_LOSS;
    TrainResult res;
    o.stop_after = run ? 1 : 0;
    if (train_run(nets[run], d, &o, NULL, NULL, &res, &err) != STATUS_OK) fail_msg("%s", err.msg);
    if (run) {
      assert_true(res.interrupted);
      net_free(nets[run]);
      ModelSpec again = model_spec_default("unet", 1, 28, 28, 3);
      again.depth = 2, again.base = 4;
      nets[run] = model_build(&again, 77, &err); /* other init: the checkpoint must win */
      model_spec_free(&again);
      o.stop_after = 0, o.resume = 1;
      if (train_run(nets[run], d, &o, NULL, NULL, &res, &err) != STATUS_OK) fail_msg("%s", err.msg);
      assert_int_equal(res.epochs_done, 3);
    }
  }
  assert_memory_equal(net_params(nets[0]), net_params(nets[1]),
                      sizeof(float) * net_param_count(nets[0]));
  net_free(nets[0]), net_free(nets[1]), data_free(d);
  remove_dir(dir);
}

int main(void) {
  const struct CMUnitTest data_tests[] = {
      cmocka_unit_test(test_dice_hand_computed),
      cmocka_unit_test(test_phantom_segment),
      cmocka_unit_test(test_npz_roundtrip_and_resize),
      cmocka_unit_test(test_folder_masks),
      cmocka_unit_test(test_real_sets),
      cmocka_unit_test(test_seg_adversarial_training),
      cmocka_unit_test(test_seg_resume),
  };
  const struct CMUnitTest attack_tests[] = {
      cmocka_unit_test(test_trained_unet_segments),
      cmocka_unit_test(test_dag_reaches_targets),
      cmocka_unit_test(test_pgd_lowers_dice),
      cmocka_unit_test(test_seg_sweep),
      cmocka_unit_test(test_seg_triage),
  };
  const int failed = cmocka_run_group_tests_name("segmentation data", data_tests, NULL, NULL);
  return failed + cmocka_run_group_tests_name("segmentation attacks", attack_tests, setup_trained,
                                              teardown_trained);
}
