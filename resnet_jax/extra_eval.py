"""More test sets at the end of training (`config.extra_eval`), for the robustness numbers that
papers now report beside ImageNet top-1.

Each entry is a TFDS 'name:split', read by the run's own evaluation pipeline (its protocol,
resize and crop, and the training set's normalisation) and classified by the final weights.
The results go to summary.json under 'extra_eval', keyed by the entry:

- `imagenet_v2`, `imagenet_sketch`: ImageNet's 1,000 classes, as its validation set.
- `imagenet2012_real` (ReaL labels, Beyer et al. 2020): a prediction is right when it is any of
  the image's labels; images without a label are left out.
- `imagenet_a`, `imagenet_r` (Hendrycks et al. 2021): 200 of the 1,000 classes, and the logits
  restricted to them, as the datasets' authors evaluate.
- `cifar10_1` (Recht et al. 2018) for CIFAR-10 runs.

The names are checked against TFDS, and their number of classes against the model's, when the
run starts, not after training.
"""

from typing import Any

import jax
import ml_collections
from jax.sharding import NamedSharding

from resnet_jax import data as data_lib
from resnet_jax import datasets, errors, evaluation, normalize


def _indices(text: str) -> tuple[int, ...]:
  return tuple(int(i) for i in text.split())


# The ImageNet class indices of the 200 classes of ImageNet-A and ImageNet-R, as the datasets'
# authors list them (github.com/hendrycks/natural-adv-examples and /imagenet-r, `indices_in_1k`).
CLASS_SUBSETS = {
  'imagenet_a': _indices(
    """6 11 13 15 17 22 23 27 30 37 39 42 47 50 57 70 71 76 79 89 90 94 96 97 99 105 107 108 110
    113 124 125 130 132 143 144 150 151 207 234 235 254 277 283 287 291 295 298 301 306 307 308
    309 310 311 313 314 315 317 319 323 324 326 327 330 334 335 336 347 361 363 372 378 386 397
    400 401 402 404 407 411 416 417 420 425 428 430 437 438 445 456 457 461 462 470 472 483 486
    488 492 496 514 516 528 530 539 542 543 549 552 557 561 562 569 572 573 575 579 589 606 607
    609 614 626 627 640 641 642 643 658 668 677 682 684 687 701 704 719 736 746 749 752 758 763
    765 768 773 774 776 779 780 786 792 797 802 803 804 813 815 820 823 831 833 835 839 845 847
    850 859 862 870 879 880 888 890 897 900 907 913 924 932 933 934 937 943 945 947 951 954 956
    957 959 971 972 980 981 984 986 987 988"""
  ),
  'imagenet_r': _indices(
    """1 2 4 6 8 9 11 13 22 23 26 29 31 39 47 63 71 76 79 84 90 94 96 97 99 100 105 107 113 122
    125 130 132 144 145 147 148 150 151 155 160 161 162 163 171 172 178 187 195 199 203 207 208
    219 231 232 234 235 242 245 247 250 251 254 259 260 263 265 267 269 276 277 281 288 289 291
    292 293 296 299 301 308 309 310 311 314 315 319 323 327 330 334 335 337 338 340 341 344 347
    353 355 361 362 365 366 367 368 372 388 390 393 397 401 407 413 414 425 428 430 435 437 441
    447 448 457 462 463 469 470 471 472 476 483 487 515 546 555 558 570 579 583 587 593 594 596
    609 613 617 621 629 637 657 658 701 717 724 763 768 774 776 779 780 787 805 812 815 820 824
    833 847 852 866 875 883 889 895 907 928 931 932 933 934 936 937 943 945 947 948 949 951 953
    954 957 963 965 967 980 981 983 988"""
  ),
}


def entries(config: ml_collections.ConfigDict) -> list[tuple[str, str]]:
  """`config.extra_eval` as (TFDS name, split) pairs; raises ConfigError for a malformed one."""
  pairs = []
  for entry in config.extra_eval:
    name, _, split = str(entry).partition(':')
    if not name or not split:
      raise errors.ConfigError(
        f'config.extra_eval entry {entry!r} is not a TFDS "name:split" pair, e.g. '
        '--config.extra_eval=\'("imagenet_v2:test", "imagenet_a:test")\'.'
      )
    pairs.append((name, split))
  if pairs and config.dataset == 'fake':
    raise errors.ConfigError(
      'config.extra_eval needs a real dataset: fake data has no classes in common with one. '
      'Drop --config.extra_eval or train on a TFDS dataset.'
    )
  return pairs


def _set_config(config: ml_collections.ConfigDict, name: str, split: str):
  """The run's config with the extra set in place of its evaluation split."""
  extra = ml_collections.ConfigDict(config.to_dict())
  extra.dataset, extra.eval_split, extra.cache = name, split, False
  return extra


class ExtraSets:
  """The configured extra sets, their builders found (and checked) when the run starts."""

  def __init__(self, config: ml_collections.ConfigDict):
    self.config = config
    self.sets = entries(config)
    if self.sets:
      from resnet_jax import input_pipeline  # Imported here: it imports TensorFlow.

      self.pipeline = input_pipeline
      for name, split in self.sets:
        input_pipeline.find_builder(_set_config(config, name, split))

  def evaluate(
    self,
    state: Any,
    mesh: jax.sharding.Mesh,
    normalization: normalize.Normalization | None,
    sharding: NamedSharding,
  ) -> dict[str, dict[str, float]]:
    """Loss, top-1, top-5 and the number of images of each set, by 'name:split'."""
    results = {}
    for name, split in self.sets:
      config = _set_config(self.config, name, split)
      builder = self.pipeline.get_builder(config)
      start_pass, num_steps = self.pipeline.eval_batches(
        builder,
        config,
        config.eval_batch_size // jax.process_count(),
        datasets.eval_images(config),
      )
      classes = CLASS_SUBSETS.get(name.split('/')[0])
      step = evaluation.jit_eval_step(config, mesh, normalization, classes)
      results[f'{name}:{split}'] = evaluation.evaluate(
        state, step, data_lib.EvalData(start_pass, num_steps), sharding
      )
    return results
