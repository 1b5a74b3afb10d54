/* The op kinds: one X(KIND, symbol) row each. The row makes the enum value
 * and the table entry together, so an op cannot be half-registered: its
 * OpDef (op_<symbol>, defined in src/ops/<symbol>.c) must exist to link. */
#ifndef MR_OPS_H
#define MR_OPS_H

#define OP_KINDS(X)                        \
  X(OP_CONV2D, conv2d)                     \
  X(OP_CONV_TRANSPOSE2D, conv_transpose2d) \
  X(OP_BATCHNORM2D, batchnorm2d)           \
  X(OP_RELU, relu)                         \
  X(OP_MAXPOOL, maxpool2d)                 \
  X(OP_AVGPOOL, avgpool2d)                 \
  X(OP_GLOBAL_AVGPOOL, global_avgpool)     \
  X(OP_FLATTEN, flatten)                   \
  X(OP_DENSE, dense)                       \
  X(OP_DROPOUT, dropout)                   \
  X(OP_ADD, add)                           \
  X(OP_SHORTCUT_PAD, shortcut_pad)         \
  X(OP_CONCAT, concat)                     \
  X(OP_UPSAMPLE, upsample)                 \
  X(OP_SIGMOID, sigmoid)                   \
  X(OP_CLIP, clip)                         \
  X(OP_MUL, mul)                           \
  X(OP_SUB, sub)                           \
  X(OP_DIV, div)

typedef enum {
#define OP_ENUM(kind, sym) kind,
  OP_KINDS(OP_ENUM)
#undef OP_ENUM
      OP_KIND_COUNT
} OpKind;

#endif
