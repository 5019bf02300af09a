r"""He et al. 2015, Table 4: single-model ImageNet validation errors of ResNet-34 B / C and
ResNet-50 / 101 / 152, multi-scale fully convolutional testing.

Table 4 tests the networks of Table 3 as Sec. 3.4: "we adopt the fully-convolutional form
[...], and average the scores at multiple scales (images are resized such that the shorter side
is in {224, 256, 384, 480, 640})": `eval_protocol='multiscale'` with those `eval_sizes`. He 2015,
Table 4, "Error rates (%) of single-model results on the ImageNet validation set":

  | model       | top-1 | top-5 |
  |-------------|-------|-------|
  | ResNet-34 B | 21.84 | 5.71  |
  | ResNet-34 C | 21.53 | 5.60  |
  | ResNet-50   | 20.74 | 5.25  |
  | ResNet-101  | 19.87 | 4.60  |
  | ResNet-152  | 19.38 | 4.49  |

(The table's other rows, VGG, GoogLeNet, PReLU-net and BN-Inception, are not in the model zoo.)
The 10-crop errors of the same networks are Table 3's (`he2015_table3_shortcuts.py`).

The network sees each whole image (`eval_max_aspect=2.0`: images up to 2:1 whole, on a square
canvas with the padding masked out, docs/evaluation.md). What may differ from the paper's test:
it may also average horizontal flips, which is not checked here.

Recipe: `configs/imagenet_he2015.py` (the 90-epoch recipe of `resnet50.py`; its docstring lists
where it departs from the paper's), option B and bottlenecks striding on their first 1x1 as
Table 3, ResNet-34 also with option C. These are the trainings of Table 3's points with another
test: to test a network trained by that sweep instead of training it again, run
`python -m resnet_jax.main` on its workdir with `--config.eval_only=True
--config.eval_protocol=multiscale --config.eval_sizes='(224, 256, 384, 480, 640)'
--config.eval_max_aspect=2.0`. One run per network, tested at the end only (the five canvases
have 72 times the pixels of one 224 crop, hence `eval_batch_size` 32): 5 runs.

  python -m resnet_jax.sweep --sweep=experiments/he2015_table4_multiscale.py --workdir=DIR --dry_run
"""

from resnet_jax.sweep import axis, zipit

SCALES = (224, 256, 384, 480, 640)  # shorter sides, He 2015 Sec. 3.4
# Table 4's (top-1, top-5) error (%), by point.
PUBLISHED = {
  ('resnet34', 'B'): (21.84, 5.71),
  ('resnet34', 'C'): (21.53, 5.60),
  ('resnet50', 'B'): (20.74, 5.25),
  ('resnet101', 'B'): (19.87, 4.60),
  ('resnet152', 'B'): (19.38, 4.49),
}


def get_sweep():
  return {
    'config': 'configs/imagenet_he2015.py',
    'fixed': {
      'eval_protocol': 'multiscale',
      'eval_sizes': SCALES,
      'eval_max_aspect': 2.0,
      'eval_batch_size': 32,
      'eval_every_steps': 0,
    },
    'points': zipit(
      axis('model', [model for model, _ in PUBLISHED]),
      axis('model_kwargs.shortcut', [shortcut for _, shortcut in PUBLISHED]),
    ),
  }
