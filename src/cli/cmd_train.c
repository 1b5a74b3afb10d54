/* medrobust train: fit a model family to a data set. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "medrobust.h"

static int parse_choice(const char *cmd, const char *opt, const char *text,
                        const char *const *names, int n, int *out) {
  for (int i = 0; i < n; i++)
    if (strcmp(text, names[i]) == 0) {
      *out = i;
      return 1;
    }
  fprintf(stderr, "medrobust %s: %s must be one of", cmd, opt);
  for (int i = 0; i < n; i++) fprintf(stderr, " %s", names[i]);
  fprintf(stderr, ", got '%s'\n", text);
  return 0;
}

/* A new model of the family, normalised by the training images' statistics. */
/* The architecture options a user set (0: the family's default). */
typedef struct {
  float width, dropout;
  int depth, base, kernel, growth, decoder_up;
  const char *block_layers;
} ArchOptions;

static Status arch_options_apply(ModelSpec *ms, const ArchOptions *a, MrError *err) {
  ms->width = a->width, ms->dropout = a->dropout;
  if (a->depth) ms->depth = a->depth;
  if (a->base) ms->base = a->base;
  if (a->kernel) ms->kernel = a->kernel;
  if (a->growth) ms->growth = a->growth;
  if (a->decoder_up) ms->decoder_up = a->decoder_up - 1;
  if (a->block_layers) {
    int n = 0, v[5] = {0}, used = 0;
    const char *p = a->block_layers;
    while (n < 5 && sscanf(p, "%d%n", &v[n], &used) == 1 && v[n] >= 1 && v[n] < NET_MAX_INPUTS) {
      n++, p += used;
      if (*p != ',') break;
      p++;
    }
    if (n < 1 || n > 4 || *p)
      return mr_error_set(err, STATUS_ERR_ARG,
                          "--block-layers '%s': 1 to 4 comma-separated counts, each 1..%d",
                          a->block_layers, NET_MAX_INPUTS - 1);
    for (int i = 0; i < 4; i++) ms->block_layers[i] = i < n ? v[i] : 0;
  }
  return STATUS_OK;
}

static Net *build_model(const char *arch, const DataSplits *data, const ArchOptions *a,
                        uint64_t seed, MrError *err) {
  const Dataset *tr = &data->split[SPLIT_TRAIN];
  ModelSpec ms =
      model_spec_default(arch, tr->c, tr->h, tr->w, data->n_classes < 2 ? 2 : data->n_classes);
  if (arch_options_apply(&ms, a, err) != STATUS_OK) return NULL;
  /* normalisation from the training images, inside the model */
  const size_t plane = (size_t)tr->h * tr->w;
  for (int c = 0; c < tr->c; c++) {
    double s = 0, ss = 0;
    for (int i = 0; i < tr->n; i++)
      for (size_t p = 0; p < plane; p++) {
        const double v = tr->images[((size_t)i * tr->c + c) * plane + p];
        s += v, ss += v * v;
      }
    const double n = (double)tr->n * plane, mean = s / n, var = ss / n - mean * mean;
    ms.norm_mean[c] = (float)mean;
    ms.norm_std[c] = (float)(var > 1e-8 ? sqrt(var) : 1.0);
  }
  for (int k = 0; k < ms.n_classes; k++)
    if (data->class_names[k]) ms.class_names[k] = strdup(data->class_names[k]);
  Net *net = model_build(&ms, seed, err);
  model_spec_free(&ms);
  return net;
}

/* The kept segmentation model's scores on the test split. */
static int print_segment_result(const char *path, const DataSplits *data, const TrainResult *res,
                                const TrainOptions *o) {
  MrError err = {0};
  Net *best = safetensors_load_net(path, &err);
  const Dataset *test = &data->split[SPLIT_TEST];
  const size_t P = (size_t)test->h * test->w;
  int *pred = malloc(sizeof(int) * P * (test->n + 1));
  SegMetrics m = {0};
  int ok =
      best && pred && test->n && net_segment_dataset(best, test, 64, pred, &err) == STATUS_OK &&
      seg_metrics_compute(&m, pred, test->masks, test->n, (int)P, net_num_classes(best), &err) ==
          STATUS_OK;
  if (!ok) {
    fprintf(stderr, "medrobust: %s\n", test->n ? err.msg : "no test images to score");
  } else {
    char robust[80] = "";
    if (o->adv)
      snprintf(robust, sizeof robust, ", val Dice under PGD %.4f", res->best_val_robust_acc);
    printf(
        "best epoch %d: val Dice %.4f%s; test Dice %.4f, IoU %.4f, pixel accuracy %.2f%% ->"
        " %s\n",
        res->best_epoch, res->best_val_acc, robust, m.mean_dice, m.mean_iou, 100 * m.pixel_accuracy,
        path);
    for (int c = 1; c < m.k; c++) {
      char buf[16];
      printf("  %-16s Dice %.4f  IoU %.4f (pooled over the test pixels)\n",
             net_class_name(best, c, buf), m.class_dice[c], m.class_iou[c]);
    }
  }
  seg_metrics_free(&m);
  free(pred);
  net_free(best);
  return ok;
}

int cmd_train(int argc, char **argv) {
  TrainOptions o = train_options_default();
  const char *data_path = NULL, *arch = "cnn", *optim = "adam", *schedule = "cosine",
             *balance = NULL;
  const char *checkpoint = NULL, *adv = "none", *adv_norm = "linf", *adv_bn = "eval";
  const char *init = NULL;
  int no_augment = 0, quiet = 0, size = 0, channels = 0;
  ArchOptions arch_opt = {.width = 1.0f};
  const char *decoder_up = NULL, *fit = "crop";
  CliVolumeArgs vargs = {0};
  CliDataArgs dargs = {0};
  const CliOption options[] = {
      {"--data", OPT_STRING, &data_path, 0, 0, " D",
       ".npz, image folder, IDX folder or fashion-mnist (required)"},
      {"--model", OPT_STRING, &arch, 0, 0, " M", "model family (medrobust models)"},
      {"--out", OPT_STRING, &o.out, 0, 0, " F",
       "best-validation model file, .safetensors (required)"},
      {"--epochs", OPT_INT, &o.epochs, 1, 100000, " N", "epochs"},
      {"--batch", OPT_INT, &o.batch, 1, 65536, " N", "batch size"},
      {"--optim", OPT_STRING, &optim, 0, 0, " adam|sgd", "optimiser"},
      {"--lr", OPT_FLOAT, &o.lr, 0, 10, " X", "learning rate"},
      {"--momentum", OPT_FLOAT, &o.momentum, 0, 0.9999, " X", "SGD momentum"},
      {"--weight-decay", OPT_FLOAT, &o.weight_decay, 0, 1, " X", "L2 weight decay"},
      {"--schedule", OPT_STRING, &schedule, 0, 0, " cosine|step|constant",
       "learning-rate schedule"},
      {"--step-every", OPT_INT, &o.step_every, 1, 100000, " N", "step schedule: epochs per decay"},
      {"--step-gamma", OPT_FLOAT, &o.step_gamma, 0, 1, " X", "step schedule: decay factor"},
      {"--no-augment", OPT_FLAG, &no_augment, 0, 0, NULL, "no flips or rotations"},
      {"--rotate", OPT_FLOAT, &o.rotate_deg, 0, 180, " DEG",
       "augmentation: rotations within +-DEG"},
      {"--noise-sd", OPT_FLOAT, &o.noise_sd, 0, 100, " S",
       "Gaussian noise of std S added to every training image, for a model to certify with "
       "certify --sigma S (Cohen et al. 2019; default 0: none)"},
      {"--balance", OPT_STRING, &balance, 0, 0, " none|loss|sample",
       "class balancing (default none; segmentation: loss, the median-frequency weighted "
       "cross-entropy of paper 002's composite loss)"},
      {"--seed", OPT_U64, &o.seed, 0, 0, " S",
       "random seed (init, shuffles, augmentation, dropout)"},
      {"--size", OPT_INT, &size, 0, 1024, " N",
       "resize images to NxN (0: as stored; image folders 64)"},
      {"--channels", OPT_INT, &channels, 0, 3, " C", "1 or 3 (0: as stored; image folders 1)"},
      {"--width", OPT_FLOAT, &arch_opt.width, 0.01, 16, " W", "channel multiplier"},
      {"--depth", OPT_INT, &arch_opt.depth, 1, 12, " N",
       "cnn: conv blocks; unet/segnet/fc-densenet: levels (0: the family's default)"},
      {"--base", OPT_INT, &arch_opt.base, 1, 1024, " N",
       "cnn/unet/segnet: channels of the first block; fc-densenet: of the first conv"},
      {"--kernel", OPT_INT, &arch_opt.kernel, 1, 11, " K", "cnn: kernel size"},
      {"--growth", OPT_INT, &arch_opt.growth, 1, 512, " G",
       "densenet/fc-densenet: channels each dense layer adds"},
      {"--block-layers", OPT_STRING, &arch_opt.block_layers, 0, 0, " L1,L2,..",
       "densenet: layers per dense block (fc-densenet: the first)"},
      {"--decoder-up", OPT_STRING, &decoder_up, 0, 0, " transposed|bilinear",
       "unet/segnet/fc-densenet: how the decoder upsamples"},
      {"--dropout", OPT_FLOAT, &arch_opt.dropout, 0, 0.95, " P", "dropout before the classifier"},
      {"--checkpoint", OPT_STRING, &checkpoint, 0, 0, " F",
       "per-epoch checkpoint (default OUT.ckpt)"},
      {"--resume", OPT_FLAG, &o.resume, 0, 0, NULL,
       "continue an interrupted run from its checkpoint"},
      {"--stop-after", OPT_INT, &o.stop_after, 0, 100000, " N",
       "stop after N epochs of this run, checkpointed, as if interrupted (a batch job's time "
       "limit); --resume continues"},
      {"--init", OPT_STRING, &init, 0, 0, " F",
       "fine-tune this model file (its architecture and normalisation; --model ignored)"},
      {"--adv", OPT_STRING, &adv, 0, 0, " none|pgd|fgsm-rs",
       "adversarial training: PGD (Madry et al.) or FGSM with random start (Wong et al.)"},
      {"--eps", OPT_FLOAT, &o.adv_eps, 0, 1e6, " E", "adversarial training: eps on [0,1] pixels"},
      {"--adv-norm", OPT_STRING, &adv_norm, 0, 0, " linf|l2", "adversarial training: norm"},
      {"--adv-iters", OPT_INT, &o.adv_steps, 1, 10000, " K",
       "PGD iterations per example (as --iters elsewhere)"},
      {"--adv-steps", OPT_INT, &o.adv_steps, 1, 10000, " K", "the same as --adv-iters"},
      {"--adv-step", OPT_FLOAT, &o.adv_step, 0, 1e6, " X",
       "step size (0: PGD 2.5 eps/K, FGSM-RS 1.25 eps)"},
      {"--adv-ratio", OPT_FLOAT, &o.adv_ratio, 0, 1, " R",
       "share of every batch replaced by adversarial examples (counted, kept exact)"},
      {"--adv-warmup", OPT_INT, &o.adv_warmup, 0, 100000, " E",
       "epochs over which eps grows linearly from 0"},
      {"--adv-bn", OPT_STRING, &adv_bn, 0, 0, " eval|train",
       "batchnorm while crafting: running statistics (as deployed) or the batch's own"},
      {"--val-iters", OPT_INT, &o.val_attack_steps, 1, 10000, " N",
       "PGD iterations of the robust validation that selects the checkpoint"},
      {"--val-steps", OPT_INT, &o.val_attack_steps, 1, 10000, " N", "the same as --val-iters"},
      {"--quiet", OPT_FLAG, &quiet, 0, 0, NULL, "no progress output"},
      {"--fit", OPT_STRING, &fit, 0, 0, " crop|pad|stretch",
       "image files that are not square: centre crop (torchvision Resize+CenterCrop), pad or "
       "stretch"},
      CLI_VOLUME_OPTIONS(vargs),
      CLI_DATA_OPTIONS(dargs),
      {0}};
  const CliPath path_roles[] = {{"--data", PATH_IN},
                                {"--init", PATH_IN},
                                {"--out", PATH_OUT_FILE},
                                {"--checkpoint", PATH_OUT_FILE},
                                {0}};
  const CliSpec spec = {
      "train", "train --data D --model M --out F [options]",
      "Trains a model, keeping the epoch with the best validation accuracy in OUT and a\n"
      "checkpoint after every epoch that --resume continues from. Deterministic for a\n"
      "given --seed, thread count and (under mpirun) rank count. With --adv, a share\n"
      "--adv-ratio of every batch (paper 001: half) is replaced by adversarial examples of\n"
      "the current weights, the kept epoch is the one of best validation accuracy under PGD\n"
      "at --eps, and the mix actually used is counted into the model file's training record.\n"
      "Under mpirun (the MPI build) the ranks share every batch of --batch images, with the\n"
      "whole batch's batchnorm statistics, and reach one process's weights to float rounding.",
      options, path_roles};
  int rc = cli_parse(&spec, argc, argv, NULL, 0, NULL);
  if (rc != CLI_OK) return rc == CLI_HELP ? 0 : EXIT_USAGE;
  if (!data_path || !o.out) {
    fprintf(stderr, "medrobust train: --data and --out are required (see --help)\n");
    return EXIT_USAGE;
  }
  int choice;
  static const char *const optims[] = {"sgd", "adam"};
  static const char *const schedules[] = {"constant", "step", "cosine"};
  static const char *const balances[] = {"none", "loss", "sample"};
  if (!parse_choice("train", "--optim", optim, optims, 2, &choice)) return EXIT_USAGE;
  o.optim = (OptimKind)choice;
  if (!parse_choice("train", "--schedule", schedule, schedules, 3, &choice)) return EXIT_USAGE;
  o.schedule = (Schedule)choice;
  if (balance && !parse_choice("train", "--balance", balance, balances, 3, &choice))
    return EXIT_USAGE;
  o.balance = balance ? (Balance)choice : BALANCE_NONE;
  static const char *const advs[] = {"none", "pgd", "fgsm-rs"};
  static const char *const norms[] = {"linf", "l2"};
  static const char *const bn_modes[] = {"eval", "train"};
  if (!parse_choice("train", "--adv", adv, advs, 3, &choice)) return EXIT_USAGE;
  o.adv = (AdvTraining)choice;
  if (!parse_choice("train", "--adv-norm", adv_norm, norms, 2, &choice)) return EXIT_USAGE;
  o.adv_norm = (Norm)choice;
  if (!parse_choice("train", "--adv-bn", adv_bn, bn_modes, 2, &choice)) return EXIT_USAGE;
  o.adv_mode = choice ? MODE_TRAIN_FROZEN : MODE_EVAL;
  if (o.adv && o.adv_norm == NORM_LINF && o.adv_eps > 1.0f) {
    fprintf(stderr, "medrobust train: an L-inf --eps above 1 means nothing on [0,1] pixels\n");
    return EXIT_USAGE;
  }
  o.init_from = init;
  if (channels == 2) {
    fprintf(stderr, "medrobust train: --channels must be 1 or 3\n");
    return EXIT_USAGE;
  }
  o.augment = !no_augment;
  ModelSpec probe = model_spec_default(arch, 1, 28, 28, 2);
  if (!probe.arch[0]) {
    fprintf(stderr, "medrobust train: unknown model '%s' (see 'medrobust models')\n", arch);
    return EXIT_USAGE;
  }
  if (decoder_up) {
    static const char *const ups[] = {"transposed", "bilinear"};
    if (!parse_choice("train", "--decoder-up", decoder_up, ups, 2, &choice)) return EXIT_USAGE;
    arch_opt.decoder_up = choice + 1;
  }
  MrError arch_err = {0};
  if (arch_options_apply(&probe, &arch_opt, &arch_err) != STATUS_OK) {
    fprintf(stderr, "medrobust train: %s\n", arch_err.msg);
    return EXIT_USAGE;
  }
  char ckpt[4096];
  snprintf(ckpt, sizeof ckpt, "%s.ckpt", o.out);
  o.checkpoint = checkpoint ? checkpoint : ckpt;

  MrError err = {0};
  Net *net = NULL;
  DataSplits *data = NULL;
  if (init) {
    /* fine-tuning: the file decides the architecture, input and normalisation */
    if (!cli_load_model_data(init, data_path, &dargs, &net, &data)) return EXIT_RUNTIME;
    arch = net_spec(net)->arch;
  } else {
    DataCheck check;
    if (!cli_data_check("train", &dargs, &check)) return EXIT_USAGE;
    DataOptions dopt = {.size = size,
                        .channels = channels,
                        .seed = check.split_seed_given ? check.split_seed : DEFAULT_SPLIT_SEED,
                        .fit = (FitMode)fit_parse(fit),
                        .split_file = dargs.split_file};
    if (!cli_volume_options("train", &vargs, &dopt)) return EXIT_USAGE;
    if (fit_parse(fit) < 0) {
      fprintf(stderr, "medrobust train: --fit must be crop, pad or stretch, got '%s'\n", fit);
      return EXIT_USAGE;
    }
    data = data_load(data_path, &dopt, &err);
    if (!data) {
      fprintf(stderr, "medrobust: %s\n", err.msg);
      return EXIT_RUNTIME;
    }
    cli_data_notes(data);
    if ((vargs.window || vargs.slices || vargs.spacing > 0) && !data->volumes)
      fprintf(stderr,
              "medrobust: warning: --window, --slices and --spacing have no effect: %s holds no "
              "DICOM or NIfTI\n",
              data_path);
    net = build_model(arch, data, &arch_opt, o.seed, &err);
    if (!net) {
      fprintf(stderr, "medrobust: %s\n", err.msg);
      data_free(data);
      return EXIT_RUNTIME;
    }
  }
  if (data->unlabelled) {
    fprintf(stderr, "medrobust train: %s has no labels (no class folders); nothing to learn from\n",
            data_path);
    net_free(net);
    data_free(data);
    return EXIT_RUNTIME;
  }
  if (data->segment && !balance) o.balance = BALANCE_LOSS;
  char record[MR_DATA_LEN];
  data_record_json(data, record, sizeof record);
  net_set_data_record(net, record);
  const Dataset *tr = &data->split[SPLIT_TRAIN];
  const int rank = dist_rank(); /* under MPI, rank 0 reports and writes the files */
  if (rank != 0) quiet = 1;
  if (!quiet)
    fprintf(stderr, "training %s (%zu parameters) on %s: %d train / %d val images, %d threads%s\n",
            arch, net_param_count(net), data->source, tr->n, data->split[SPLIT_VAL].n,
            mr_get_threads(), dist_size() > 1 ? " per process" : "");
  if (!quiet && dist_size() > 1)
    fprintf(stderr, "data-parallel over %d processes: each takes its share of every batch of %d\n",
            dist_size(), o.batch);
  if (!quiet && o.adv)
    fprintf(stderr, "adversarial training: %s %s eps %g, %.0f%% of every batch adversarial\n", adv,
            adv_norm, o.adv_eps, 100.0 * o.adv_ratio);
  TrainResult res;
  Status s = train_run(net, data, &o, cli_train_progress, &quiet, &res, &err);
  int exit_code = 0;
  if (s != STATUS_OK) {
    if (dist_size() > 1)
      fprintf(stderr, "medrobust train: rank %d: %s\n", rank, err.msg);
    else
      fprintf(stderr, "medrobust: %s\n", err.msg);
    exit_code = EXIT_RUNTIME;
  } else if (rank != 0) {
    /* rank 0 scores the kept model on the test split */
  } else if (res.interrupted) {
    printf("stopped after epoch %d of %d as asked (--stop-after); --resume continues from %s\n",
           res.epochs_done, o.epochs, o.checkpoint);
  } else if (data->segment) {
    exit_code = print_segment_result(o.out, data, &res, &o) ? 0 : EXIT_RUNTIME;
  } else {
    Net *best = safetensors_load_net(o.out, &err);
    const Dataset *test = &data->split[SPLIT_TEST];
    float *probs =
        best ? malloc(sizeof(float) * ((size_t)test->n * net_num_classes(best) + 1)) : NULL;
    Metrics m = {0};
    if (!best || !probs || net_predict_dataset(best, test, 256, probs, &err) != STATUS_OK ||
        metrics_compute(&m, probs, test->labels, test->n, net_num_classes(best), &err) !=
            STATUS_OK) {
      fprintf(stderr, "medrobust: %s\n", err.msg);
      exit_code = EXIT_RUNTIME;
    } else {
      char robust[96] = "";
      if (o.adv)
        snprintf(robust, sizeof robust, ", val robust acc %.2f%% (adversarial share %.3f)",
                 100 * res.best_val_robust_acc,
                 res.images ? (double)res.adv_images / res.images : 0.0);
      printf(
          "best epoch %d: val acc %.2f%%%s; test acc %.2f%%, balanced acc %.2f%%, AUC %.4f -> "
          "%s\n",
          res.best_epoch, 100 * res.best_val_acc, robust, 100 * m.accuracy,
          100 * m.balanced_accuracy, m.auc, o.out);
    }
    metrics_free(&m);
    free(probs);
    net_free(best);
  }
  net_free(net);
  data_free(data);
  return exit_code;
}
