/* medrobust attack: adversarial images as float32 (the papers' eps of 0.001
 * is below one 8-bit grey level, so nothing is rounded), their predictions,
 * PNGs on request, and the quantisation check: do the attacks survive being
 * stored at 8, 12 or 16 bits (PNG, DICOM)? */
#include <cjson/cJSON.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../core/atomicfile.h"
#include "cli.h"
#include "medrobust.h"

/* OUT.csv: a row per image naming its file, true class, clean and attacked
 * predictions with their confidence, the perturbation's L-inf size, whether
 * the attack survives 8-bit storage and, with --volumes, the prediction on the
 * slice read back from its written volume. Written atomically. */
static Status write_image_table(const char *out, const Dataset *set, const Net *net,
                                const int *clean_pred, const float *clean_conf, const int *adv_pred,
                                const float *adv_conf, const unsigned char *survives8,
                                const int *volume_pred, const float *adv, MrError *err) {
  char path[4200];
  snprintf(path, sizeof path, "%s.csv", out);
  AtomicFile af;
  const Status opened = atomic_open(&af, path, "w", err);
  if (opened != STATUS_OK) return opened;
  FILE *f = af.f;
  const size_t per = (size_t)set->c * set->h * set->w;
  fprintf(f,
          "index,file,id,true,clean_pred,clean_confidence,adv_pred,adv_confidence,linf,"
          "survives_8bit%s\n",
          volume_pred ? ",volume_pred" : "");
  char id[64], buf[16];
  for (int i = 0; i < set->n; i++) {
    double linf = 0;
    for (size_t p = 0; p < per; p++)
      linf = fmax(linf, fabs((double)adv[per * i + p] - set->images[per * i + p]));
    fprintf(f, "%d,", i);
    csv_write_field(f, dataset_image_id(set, i, id, sizeof id));
    fprintf(f, ",%s,", dataset_image_hash(set, i, id, sizeof id));
    csv_write_field(f, set->labels[i] >= 0 ? net_class_name(net, set->labels[i], buf) : "");
    fputc(',', f);
    csv_write_field(f, net_class_name(net, clean_pred[i], buf));
    fprintf(f, ",%.6f,", clean_conf[i]);
    csv_write_field(f, net_class_name(net, adv_pred[i], buf));
    fprintf(f, ",%.6f,%.6g,%d", adv_conf[i], linf, survives8[i]);
    if (volume_pred) { /* the prediction on the slice read back from its written volume */
      fputc(',', f);
      csv_write_field(f, net_class_name(net, volume_pred[i], buf));
    }
    fputc('\n', f);
  }
  return atomic_commit(&af, err);
}

int cmd_attack(int argc, char **argv) {
  const char *model = NULL, *data_path = NULL, *split = "test", *out = NULL, *attack = "pgd",
             *norm = "linf";
  const char *png_dir = NULL, *target_text = "none", *volumes_dir = NULL, *format_text = "nifti";
  float eps = 0.004f;
  int batch = 128, limit = 0, png_count = 16, resume = 0;
  AttackOptions base = attack_options_default(ATTACK_PGD);
  base.iters = 0;
  const char *eps_text = NULL, *dag_type = NULL, *target_masks = NULL;
  CliDataArgs dargs = {0};
  const CliOption options[] = {
      {"--model", OPT_STRING, &model, 0, 0, " M", "model file (required)"},
      {"--data", OPT_STRING, &data_path, 0, 0, " D", "data set (required)"},
      {"--split", OPT_STRING, &split, 0, 0, " S", "train, val or test"},
      {"--out", OPT_STRING, &out, 0, 0, " F.npz", "adversarial set, float32 (required)"},
      {"--attack", OPT_STRING, &attack, 0, 0, " A",
       "fgsm bim pgd mifgsm deepfool cw square apgd-ce apgd-dlr fmn (minimal norm)"},
      {"--eps", OPT_STRING, &eps_text, 0, 0, " E",
       "perturbation size on [0,1] (4/255 accepted; default 0.004)"},
      {"--norm", OPT_STRING, &norm, 0, 0, " linf|l2", "threat model"},
      {"--iters", OPT_INT, &base.iters, 0, 100000, " N", "iterations (0: the attack's default)"},
      {"--restarts", OPT_INT, &base.restarts, 1, 1000, " N", "PGD/APGD restarts"},
      {"--step", OPT_FLOAT, &base.step, 0, 10, " X", "step size (0: the attack's default)"},
      {"--step-rel", OPT_FLOAT, &base.step_rel, 0, 10, " F",
       "step = F x eps (paper 004: 0.1 with 20 iterations)"},
      {"--target", OPT_STRING, &target_text, 0, 0, " none|least-likely|K", "targeted attack"},
      {"--queries", OPT_INT, &base.queries, 1, 1000000, " N", "Square: query budget"},
      {"--seed", OPT_U64, &base.seed, 0, 0, " S", "random starts and queries"},
      {"--batch", OPT_INT, &batch, 1, 65536, " N", "images per batch"},
      {"--limit", OPT_INT, &limit, 0, 100000000, " N", "only the first N images (0: all)"},
      {"--png", OPT_STRING, &png_dir, 0, 0, " DIR",
       "also write clean / adversarial / amplified-difference PNGs"},
      {"--png-count", OPT_INT, &png_count, 1, 100000, " N", "how many images get PNGs"},
      {"--volumes", OPT_STRING, &volumes_dir, 0, 0, " DIR",
       "DICOM/NIfTI data: each attacked volume back in modality units (HU for CT) as "
       "DIR/REL.nii.gz, the source's geometry kept"},
      {"--volume-format", OPT_STRING, &format_text, 0, 0, " nifti|dicom",
       "dicom: DICOM volumes as derived series DIR/REL/ (new UIDs, DERIVED\\SECONDARY)"},
      {"--dag-type", OPT_STRING, &dag_type, 0, 0, " A|B|C",
       "segmentation: the target of DAG or of a targeted fgsm/bim/pgd (paper 002)"},
      {"--target-masks", OPT_STRING, &target_masks, 0, 0, " F.npz",
       "segmentation: targets, the test-split masks of a segmentation .npz (test_masks, or "
       "bare masks), one per image in the split's order"},
      CLI_RESUME_OPTION(resume),
      CLI_DATA_OPTIONS(dargs),
      {0}};
  const CliPath path_roles[] = {{"--model", PATH_IN},
                                {"--data", PATH_IN},
                                {"--out", PATH_OUT_FILE},
                                {"--volumes", PATH_OUT_DIR},
                                {0}};
  const CliSpec spec = {
      "attack", "attack --model M --data D --out F.npz [options]",
      "Crafts adversarial images (float32, test split layout, so 'medrobust evaluate\n"
      "--data F.npz' measures transfer to other models) and checks whether each attack\n"
      "survives rounding to 8, 12 and 16 bits. On a segmentation model: fgsm, bim, pgd\n"
      "or dag, untargeted or toward a DAG target type or given masks; F.npz holds the\n"
      "adversarial images with the true masks (a segmentation set) and both predictions.",
      options, path_roles};
  int rc = cli_parse(&spec, argc, argv, NULL, 0, NULL);
  if (rc != CLI_OK) return rc == CLI_HELP ? 0 : EXIT_USAGE;
  if (!model || !data_path || !out) {
    fprintf(stderr, "medrobust attack: --model, --data and --out are required (see --help)\n");
    return EXIT_USAGE;
  }
  VolumeFormat volume_format = VOLUME_NIFTI;
  if (!strcmp(format_text, "dicom"))
    volume_format = VOLUME_DICOM;
  else if (strcmp(format_text, "nifti") != 0) {
    fprintf(stderr, "medrobust attack: --volume-format must be nifti or dicom, got '%s'\n",
            format_text);
    return EXIT_USAGE;
  }
  const int kind = attack_parse(attack);
  if (kind < 0) {
    fprintf(stderr, "medrobust attack: unknown attack '%s'\n", attack);
    return EXIT_USAGE;
  }
  if (!cli_parse_norm("attack", norm, &base.norm) || !cli_parse_target(target_text, &base))
    return EXIT_USAGE;
  float e = eps;
  const int physical = eps_text && cli_eps_physical(eps_text); /* HU: once the window is known */
  if (!physical && eps_text &&
      !cli_parse_eps_value("attack", "--eps", eps_text, base.norm, NULL, &e))
    return EXIT_USAGE;
  if (!physical && !eps_text && !cli_eps_valid("attack", e, base.norm, "(default)"))
    return EXIT_USAGE;
  const int s_idx = cli_split("attack", split);
  if (s_idx < 0) return EXIT_USAGE;
  AttackOptions o = base;
  const AttackOptions defaults = attack_options_default((AttackKind)kind);
  o.kind = (AttackKind)kind, o.eps = e;
  if (kind == ATTACK_DAG && !eps_text) o.eps = 0.0f; /* DAG is unbounded unless asked */
  if (!o.iters) o.iters = defaults.iters;
  char journal_path[4200];
  cli_journal_rank_path(out, 0, journal_path, sizeof journal_path);
  if (cli_journal_check("attack", journal_path, resume)) return EXIT_USAGE;
  MrError err = {0};
  Net *net;
  DataSplits *data;
  if (!cli_load_model_data(model, data_path, &dargs, &net, &data)) return EXIT_RUNTIME;
  if (physical) {
    if (!cli_parse_eps_value("attack", "--eps", eps_text, base.norm, &data->window, &e)) {
      net_free(net);
      data_free(data);
      return EXIT_USAGE;
    }
    o.eps = e;
  }
  Dataset set = data->split[s_idx];
  if (limit && limit < set.n) set.n = limit;
  if (volumes_dir && volumes_check_out_dir(data, volumes_dir, &err) != STATUS_OK) {
    fprintf(stderr, "medrobust attack: --volumes %s\n", err.msg);
    net_free(net);
    data_free(data);
    return EXIT_USAGE;
  }
  if (volumes_dir && (!data->volumes || net_output_pixels(net) > 1)) {
    fprintf(stderr,
            "medrobust attack: --volumes writes back the DICOM/NIfTI volumes a "
            "classifier's slices come from; %s\n",
            data->volumes ? "this is a segmentation model" : "this data has none");
    net_free(net);
    data_free(data);
    return EXIT_USAGE;
  }
  if (net_output_pixels(net) <= 1 && (dag_type || target_masks)) {
    fprintf(stderr,
            "medrobust attack: --dag-type and --target-masks are for segmentation "
            "models\n");
    net_free(net);
    data_free(data);
    return EXIT_USAGE;
  }
  int code;
  Journal *journal =
      cli_journal_open("attack", journal_path, resume, argc, argv, &net, 1, &set, NULL, &code);
  if (!journal) {
    net_free(net);
    data_free(data);
    return code;
  }
  if (net_output_pixels(net) > 1 && dist_size() > 1) {
    fprintf(stderr, "medrobust attack: segmentation models run in one process (no mpirun)\n");
    journal_close(journal);
    net_free(net);
    data_free(data);
    return EXIT_USAGE;
  }
  if (net_output_pixels(net) > 1) {
    int rc_seg = cli_attack_segment(net, &set, &o, dag_type, target_masks, out, png_dir, png_count,
                                    batch, journal);
    if (rc_seg == 0)
      rc_seg = cli_journal_finish("attack", journal);
    else
      journal_close(journal);
    net_free(net);
    data_free(data);
    return rc_seg;
  }
  const int k = net_num_classes(net), n = set.n;
  const size_t per = (size_t)set.c * set.h * set.w;
  float *adv = malloc(sizeof(float) * per * (n ? n : 1)),
        *probs = malloc(sizeof(float) * k * batch);
  float *q = malloc(sizeof(float) * per * batch);
  int *clean_pred = malloc(sizeof(int) * (n + 1)), *adv_pred = malloc(sizeof(int) * (n + 1));
  int *labels = malloc(sizeof(int) * (n + 1)), *target = malloc(sizeof(int) * (n + 1));
  float *clean_conf = malloc(sizeof(float) * (n + 1)), *adv_conf = malloc(sizeof(float) * (n + 1));
  unsigned char *survives8 = calloc(n + 1, 1);
  const int bits[3] = {8, 12, 16};
  int survive[3] = {0}, fooled = 0, correct_clean = 0, correct_adv = 0;
  Status st = adv && probs && q && clean_pred && adv_pred && labels && target && clean_conf &&
                      adv_conf && survives8
                  ? STATUS_OK
                  : mr_error_set(&err, STATUS_ERR_NOMEM, "out of memory");
  /* the clean predictions (every rank: the attack's targets), then the batches' attacks from
   * a queue the MPI ranks share, gathered on rank 0, which checks and writes them */
  for (int start = 0; st == STATUS_OK && start < n; start += batch) {
    const int B = n - start < batch ? n - start : batch;
    net_predict(net, set.images + per * start, B, probs);
    for (int i = 0; i < B; i++) {
      const int idx = start + i;
      clean_pred[idx] = argmax(probs + (size_t)i * k, k);
      clean_conf[idx] = probs[(size_t)i * k + clean_pred[idx]];
      /* an unlabelled image is attacked away from what the model sees in it */
      target[idx] = set.labels[idx] >= 0 ? set.labels[idx] : clean_pred[idx];
    }
  }
  unsigned char *done = calloc(n + 1, 1);
  DistQueue *queue = dist_queue_new((n + batch - 1) / batch, 1);
  if (st == STATUS_OK && (!done || !queue))
    st = mr_error_set(&err, STATUS_ERR_NOMEM, "out of memory");
  for (int bi; st == STATUS_OK && (bi = dist_queue_next(queue)) < (n + batch - 1) / batch;) {
    const int start = bi * batch, B = n - start < batch ? n - start : batch;
    memset(done + start, 1, (size_t)B);
    /* the unit of the journal: the batch's adversarial images; the rest is recomputed */
    const JournalPart unit = {adv + per * start, sizeof(float) * per * B};
    char key[48];
    snprintf(key, sizeof key, "attack/b%d", start);
    if (journal_restore(journal, key, &unit, 1)) continue;
    const AttackOptions at = attack_at(&o, start);
    st = attack_run(net, &at, set.images + per * start, target + start, B, adv + per * start, &err);
    if (st == STATUS_OK) st = journal_record(journal, key, &unit, 1, &err);
  }
  dist_queue_free(queue, st != STATUS_OK);
  if (st != STATUS_OK && dist_size() > 1) { /* no collective: main ends the job */
    free(done);
    return cli_rank_done("attack", st, &err, journal);
  }
  if (st == STATUS_OK) st = dist_gather(adv, sizeof(float) * per, n, done, &err);
  free(done);
  if (dist_rank() > 0) { /* rank 0 checks and writes */
    const int rc = cli_rank_done("attack", st, &err, journal);
    free(adv), free(probs), free(q), free(clean_pred), free(adv_pred), free(labels), free(target);
    free(clean_conf), free(adv_conf), free(survives8);
    net_free(net), data_free(data);
    return rc;
  }
  for (int start = 0; st == STATUS_OK && start < n; start += batch) {
    const int B = n - start < batch ? n - start : batch;
    net_predict(net, adv + per * start, B, probs);
    for (int i = 0; i < B; i++) {
      const int idx = start + i, y = target[idx];
      adv_pred[idx] = argmax(probs + (size_t)i * k, k);
      adv_conf[idx] = probs[(size_t)i * k + adv_pred[idx]];
      labels[idx] = set.labels[idx];
      correct_clean += clean_pred[idx] == y;
      correct_adv += adv_pred[idx] == y;
      fooled += clean_pred[idx] == y && adv_pred[idx] != y;
    }
    /* quantisation check: round to each bit depth and predict again */
    for (int b = 0; b < 3; b++) {
      const float levels = (float)((1 << bits[b]) - 1);
      for (size_t i = 0; i < per * B; i++) q[i] = roundf(adv[per * start + i] * levels) / levels;
      net_predict(net, q, B, probs);
      for (int i = 0; i < B; i++) {
        const int idx = start + i;
        const int y = target[idx];
        const int kept =
            clean_pred[idx] == y && adv_pred[idx] != y && argmax(probs + (size_t)i * k, k) != y;
        survive[b] += kept;
        if (b == 0) survives8[idx] = (unsigned char)kept;
      }
    }
  }
  if (st == STATUS_OK) {
    /* the adversarial set in the MedMNIST layout (channels last), as the test split */
    float *hwc = malloc(sizeof(float) * per * (n ? n : 1));
    const size_t plane = (size_t)set.h * set.w;
    for (int i = 0; i < n; i++)
      for (size_t p = 0; p < plane; p++)
        for (int c = 0; c < set.c; c++)
          hwc[(i * plane + p) * set.c + c] = adv[i * per + c * plane + p];
    NpzWriter *w = npz_writer_open(out, &err);
    if (!w) {
      st = err.status;
    } else {
      const int img_shape[4] = {n, set.h, set.w, set.c}, empty_shape[4] = {0, set.h, set.w, set.c};
      const int lab_shape[2] = {n, 1}, empty_lab[2] = {0, 1}, vec[1] = {n};
      const int nd = set.c == 1 ? 3 : 4;
      npz_writer_add(w, "test_images", 'f', img_shape, nd, hwc);
      npz_writer_add(w, "test_labels", 'i', lab_shape, 2, labels);
      npz_writer_add(w, "train_images", 'f', empty_shape, nd, hwc);
      npz_writer_add(w, "train_labels", 'i', empty_lab, 2, labels);
      npz_writer_add(w, "val_images", 'f', empty_shape, nd, hwc);
      npz_writer_add(w, "val_labels", 'i', empty_lab, 2, labels);
      npz_writer_add(w, "clean_predictions", 'i', vec, 1, clean_pred);
      npz_writer_add(w, "adversarial_predictions", 'i', vec, 1, adv_pred);
      st = npz_writer_close(w, &err);
    }
    free(hwc);
  }
  /* the volumes in modality units, and what the model says of each attacked slice read
   * back from them */
  VolumeWriteReport written = {0};
  int *volume_pred = NULL, volume_survive = 0;
  if (st == STATUS_OK && volumes_dir) {
    float *reread = malloc(sizeof(float) * per * (n ? n : 1));
    volume_pred = malloc(sizeof(int) * (n + 1));
    if (!reread || !volume_pred)
      st = mr_error_set(&err, STATUS_ERR_NOMEM, "out of memory");
    else if (!cli_make_dir(volumes_dir))
      st = mr_error_set(&err, STATUS_ERR_IO, "%s: cannot create", volumes_dir);
    if (st == STATUS_OK) {
      memcpy(reread, adv, sizeof(float) * per * n);
      st = volumes_write_perturbed(data, &set, n, adv, volumes_dir, volume_format, reread, &written,
                                   &err);
    }
    for (int start = 0; st == STATUS_OK && start < n; start += batch) {
      const int B = n - start < batch ? n - start : batch;
      net_predict(net, reread + per * start, B, probs);
      for (int i = 0; i < B; i++) {
        const int idx = start + i, y = target[idx];
        volume_pred[idx] = argmax(probs + (size_t)i * k, k);
        volume_survive += clean_pred[idx] == y && adv_pred[idx] != y && volume_pred[idx] != y;
      }
    }
    free(reread);
  }
  if (st == STATUS_OK)
    st = write_image_table(out, &set, net, clean_pred, clean_conf, adv_pred, adv_conf, survives8,
                           volume_pred, adv, &err);
  if (st == STATUS_OK && png_dir) {
    if (!cli_make_dir(png_dir))
      st = mr_error_set(&err, STATUS_ERR_IO, "%s: cannot create", png_dir);
    float *diff = malloc(sizeof(float) * per);
    const float amp = o.eps > 0 && attack_is_bounded(o.kind) ? 0.5f / o.eps : 10.0f;
    for (int i = 0; st == STATUS_OK && i < n && i < png_count; i++) {
      char path[4300];
      const int scale = set.h < 64 ? 4 : set.h < 128 ? 2 : 1;
      snprintf(path, sizeof path, "%s/%05d_clean.png", png_dir, i);
      st = image_write_png(path, set.images + per * i, set.c, set.h, set.w, scale, &err);
      snprintf(path, sizeof path, "%s/%05d_adv.png", png_dir, i);
      if (st == STATUS_OK)
        st = image_write_png(path, adv + per * i, set.c, set.h, set.w, scale, &err);
      for (size_t p = 0; p < per; p++)
        diff[p] = 0.5f + amp * (adv[per * i + p] - set.images[per * i + p]);
      snprintf(path, sizeof path, "%s/%05d_diff.png", png_dir, i);
      if (st == STATUS_OK) st = image_write_png(path, diff, set.c, set.h, set.w, scale, &err);
    }
    free(diff);
  }
  int code_out = EXIT_RUNTIME;
  if (st != STATUS_OK) {
    fprintf(stderr, "medrobust: %s\n", err.msg);
    journal_close(journal);
  } else {
    dist_barrier(); /* the outputs exist: every rank may drop its journal */
    code_out = cli_journal_finish("attack", journal);
  }
  if (st == STATUS_OK && code_out == 0) {
    char eps_text[64]; /* in HU too, through a window */
    if (set.window.width > 0)
      eps_describe_set(o.eps, &set, o.norm, eps_text, sizeof eps_text);
    else
      snprintf(eps_text, sizeof eps_text, "%g", o.eps);
    printf(
        "%s %s eps %s on %d images of %s (%s): accuracy %.2f%% -> %.2f%%, %d attacks succeeded\n",
        attack_name(o.kind), norm, eps_text, n, data_path, split,
        100.0 * correct_clean / (n ? n : 1), 100.0 * correct_adv / (n ? n : 1), fooled);
    printf("stored at   8 bits (PNG): %d of %d survive\n", survive[0], fooled);
    printf("stored at  12 bits (DICOM): %d of %d survive\n", survive[1], fooled);
    printf("stored at  16 bits (DICOM): %d of %d survive\n", survive[2], fooled);
    if (o.eps > 0 && o.eps < 0.5f / 255)
      printf("note: eps %g is below half an 8-bit grey level\n", o.eps);
    printf("wrote %s (float32; evaluate other models on it with --data %s)\n", out, out);
    printf("per image (file, classes, confidence, L-inf, survives 8-bit): %s.csv\n", out);
    if (volumes_dir) {
      printf(
          "wrote %d attacked volumes in modality units to %s/ (%s): %ld voxels changed, by at "
          "most %.4g",
          written.volumes, volumes_dir,
          volume_format == VOLUME_DICOM ? "DICOM as derived series, NIfTI as float32"
                                        : "NIfTI, float32",
          written.changed, written.max_change);
      if (set.window.width > 0) printf(" HU");
      printf("\n");
      printf("read back from them: %d of %d attacks survive", volume_survive, fooled);
      if (written.hidden)
        printf(
            " (%ld changed voxels lie where the window clips before and after the change: "
            "the model saw a change there that the volume cannot hold)",
            written.hidden);
      printf("\n");
    }
  }
  free(adv), free(probs), free(q), free(clean_pred), free(adv_pred), free(labels), free(target);
  free(clean_conf), free(adv_conf), free(survives8), free(volume_pred);
  net_free(net);
  data_free(data);
  return code_out;
}
