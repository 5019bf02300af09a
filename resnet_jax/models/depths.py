"""Which depths each family has, and how a depth becomes the stages of a network.

The `*_stages` functions return the stage fields (sizes, output channels, inner widths, groups,
block kind) shared by the post-activation, pre-activation and ResStage/iResNet networks.
"""

# Blocks per stage of the ImageNet networks (torchvision; 200-1001 from the official iResNet code).
IMAGENET_STAGE_SIZES = {
  18: (2, 2, 2, 2),
  34: (3, 4, 6, 3),
  50: (3, 4, 6, 3),
  101: (3, 4, 23, 3),
  152: (3, 8, 36, 3),
  200: (3, 24, 36, 3),
  302: (4, 34, 58, 4),
  404: (4, 46, 80, 4),
  1001: (4, 155, 170, 4),
}

# The depths each ImageNet family defines; 18 and 34 use basic blocks, 50 and up bottlenecks.
IMAGENET_DEPTHS = {
  'resnet': (18, 34, 50, 101, 152, 200),
  'preact_resnet': (18, 34, 50, 101, 152, 200),
  'resstage': (18, 34, 50, 101, 152, 200),
  'iresnet': (18, 34, 50, 101, 152, 200, 302, 404, 1001),
  'resgroup': (50, 101, 152),
  'resgroupfix': (50, 101, 152),
  'iresgroup': (50, 101, 152),
  'iresgroupfix': (50, 101, 152),
}

# Bottlenecks from this depth up where the depth allows both (He 2016: 110 basic, 164 bottleneck).
CIFAR_BOTTLENECK_FROM = 164
BLOCKS = ('basic', 'bottleneck')


def imagenet_stage_sizes(family: str, depth: int) -> tuple[int, ...]:
  valid = IMAGENET_DEPTHS[family]
  if depth not in valid:
    raise ValueError(f'{family} has no depth {depth}; valid depths: {", ".join(map(str, valid))}.')
  return IMAGENET_STAGE_SIZES[depth]


def cifar_stage_sizes(
  family: str, depth: int, block: str | None = None, min_blocks: int = 1
) -> tuple[tuple[int, int, int], bool]:
  """Blocks per stage (n, n, n) and whether they are bottlenecks, for a CIFAR network.

  Basic blocks have 2 layers, bottlenecks 3; with the stem and the classifier that is depth 6n+2
  or 9n+2. With `block=None`, a 9n+2 depth gets bottlenecks if it is at least 164 (He 2016's
  ResNet-164 and -1001) or not also 6n+2; every other 6n+2 depth basic blocks (He 2015's
  20 ... 1202; 3002).
  """
  if block is not None and block not in BLOCKS:
    raise ValueError(f'block={block!r} is not one of {BLOCKS} (None: chosen by depth).')
  basic_ok = (depth - 2) % 6 == 0 and (depth - 2) // 6 >= min_blocks
  bottleneck_ok = (depth - 2) % 9 == 0 and (depth - 2) // 9 >= min_blocks
  if block is None:
    block = (
      'bottleneck'
      if bottleneck_ok and (depth >= CIFAR_BOTTLENECK_FROM or not basic_ok)
      else 'basic'
    )
  if block == 'basic' and not basic_ok or block == 'bottleneck' and not bottleneck_ok:
    layers, start = (6, 6 * min_blocks + 2) if block == 'basic' else (9, 9 * min_blocks + 2)
    raise ValueError(
      f'{family} cannot have depth {depth} with {block} blocks: the depth must be {layers}n+2 '
      f'with n >= {min_blocks} blocks per stage ({start}, {start + layers}, ...).'
    )
  n = (depth - 2) // (6 if block == 'basic' else 9)
  return (n, n, n), block == 'bottleneck'


def resgroup_groups(groups: int, fix: bool) -> tuple[int, int, int, int]:
  """Groups of the 3x3 convolutions per stage: ResGroup scales them with the stage width."""
  if groups < 1:
    raise ValueError(f'groups={groups} must be a positive integer.')
  if fix:
    return (groups,) * 4
  return (max(1, groups // 8), max(1, groups // 4), max(1, groups // 2), groups)


def imagenet_stages(family: str, depth: int, groups: int, width_per_group: int) -> dict:
  """Four stages of 64 ... 512 planes (x4 at the output of bottlenecks, from depth 50 on);
  `groups` and `width_per_group` widen the 3x3 of bottlenecks as torchvision's ResNeXt."""
  bottleneck = depth >= 50
  if not bottleneck and (groups != 1 or width_per_group != 64):
    raise ValueError(
      f'{family}{depth} has basic blocks, which support only groups=1 and width_per_group=64 '
      '(as torchvision); use a depth of 50 or more for grouped bottlenecks.'
    )
  planes = (64, 128, 256, 512)
  return dict(
    stage_sizes=imagenet_stage_sizes(family, depth),
    stage_features=tuple(p * 4 if bottleneck else p for p in planes),
    stage_widths=tuple(int(p * width_per_group / 64) * groups for p in planes),
    stage_groups=(groups,) * 4,
    bottleneck=bottleneck,
  )


def resgroup_stages(family: str, depth: int, groups: int, fix: bool) -> dict:
  """Duta 2020's wide grouped bottlenecks: 256 ... 2048 channels inside, half at the output."""
  return dict(
    stage_sizes=imagenet_stage_sizes(family, depth),
    stage_features=(128, 256, 512, 1024),
    stage_widths=(256, 512, 1024, 2048),
    stage_groups=resgroup_groups(groups, fix),
    bottleneck=True,
  )


def cifar_stages(
  family: str, depth: int, block: str | None, base_width: int, min_blocks: int = 1
) -> dict:
  """He 2015's CIFAR layout: a 3x3 stem of `base_width` channels, three stages of
  base_width x (1, 2, 4) channels (x4 at the output of bottlenecks)."""
  stage_sizes, bottleneck = cifar_stage_sizes(family, depth, block, min_blocks)
  planes = tuple(base_width * m for m in (1, 2, 4))
  return dict(
    stage_sizes=stage_sizes,
    stage_features=tuple(p * 4 if bottleneck else p for p in planes),
    stage_widths=planes,
    stage_groups=(1, 1, 1),
    bottleneck=bottleneck,
    cifar=True,
    stem_features=base_width,
  )
