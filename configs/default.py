"""Base configuration: every field the training loop reads, documented once.

Each config file in this directory starts from `get_config()` here and overrides only what
differs. Any field can be overridden on the command line, e.g. `--config.batch_size=256`.
"""

import ml_collections


def get_config() -> ml_collections.ConfigDict:
  config = ml_collections.ConfigDict()

  # --- Model -------------------------------------------------------------------------------
  # Registry name, see `resnet_jax.models.list_models()` (e.g. 'cifar_resnet20', 'iresnet50').
  config.model = 'cifar_resnet20'
  # If > 0, replaces the depth in the model name: `--config.depth=110` turns cifar_resnet20 into
  # cifar_resnet110. Lets one config file and one sweep axis cover a family's depths.
  config.depth = 0
  # Extra keyword arguments for `create_model` (e.g. shortcut='B', zero_init_residual=True).
  # Any option of the chosen model can be given, `--config.model_kwargs.dropout_rate=0.2`;
  # one it does not take is an error that lists those it does (`models.model_options`).
  config.model_kwargs = ml_collections.ConfigDict()
  # Stochastic depth (Huang et al. 2016): in training, the residual branch of block l of the
  # network's L blocks is dropped, for each image separately, with probability
  # l / L * stochastic_depth_rate (the last block's rate is this), and scaled by 1 / (1 - that)
  # where kept; evaluation uses every block as it is. Where the drop sits in each family's
  # blocks: `resnet_jax.models.blocks.ResidualBlock.drop_path`. 0: off.
  config.stochastic_depth_rate = 0.0
  # Compute dtype of convolutions and dense layers: 'float32', 'bfloat16', or 'auto' (bfloat16
  # on GPU/TPU, float32 on CPU). Parameters, BatchNorm statistics, softmax and loss always
  # stay in float32.
  config.dtype = 'auto'
  # Directory of an Orbax checkpoint (from `resnet_jax.convert` or a training run) whose
  # `params` and `batch_stats` initialise the model; the optimizer starts fresh. A classifier
  # with another number of classes is dropped and initialised afresh (fine-tuning).
  config.init_from = ''
  # Fine-tuning: -1 trains every layer, 0 freezes the stem, N the stem and the first N stages.
  config.freeze_stages = -1
  # The learning rate of everything but the classifier, as a multiple of the classifier's.
  config.backbone_lr_scale = 1.0
  # Only evaluate (the checkpoint in workdir, else `init_from`) and write summary.json.
  config.eval_only = False

  # --- Data --------------------------------------------------------------------------------
  # Any TFDS name, with an optional ':VERSION' or '/CONFIG' ('cifar10', 'imagenet2012',
  # 'oxford_flowers102'), 'digits' (the embedded UCI digits, shipped with scikit-learn), 'folder'
  # (images in data_dir/<split>/<class>/, see docs/own_data.md) or 'fake' (synthetic batches, no
  # TensorFlow needed).
  config.dataset = 'cifar10'
  # TFDS data directory; empty means the TFDS default (~/tensorflow_datasets or $TFDS_DATA_DIR).
  # With dataset='folder', the folder of images.
  config.data_dir = ''
  # TFDS split names (any TFDS split expression, e.g. 'train[:90%]') for training and evaluation.
  # He 2015's CIFAR protocol for choosing hyper-parameters, 45k training and 5k validation
  # images: train_split='train[:45000]', eval_split='train[45000:]'.
  config.train_split = 'train'
  config.eval_split = 'test'
  # Side of the square training images, pixels (after crop).
  config.image_size = 32
  # How the random-resized crop of ImageNet training images (8-100% of the area, aspect ratio
  # 3/4-4/3) is drawn: 'inception' (TF's sample_distorted_bounding_box, the whole image when
  # none of 10 draws fits) or 'torchvision' (torchvision's RandomResizedCrop, as the official
  # iResNet script trains: larger crops on average, the central crop of an allowed aspect ratio
  # when none fits). CIFAR and the digits pad and crop instead.
  config.crop_sampler = 'inception'
  # Number of classes of the classifier; 0: the dataset's (fake data: 10). A number that
  # disagrees with the dataset is an error.
  config.num_classes = 0
  # Training augmentation: '' (the dataset's own), 'pad_crop' (pad by 1/8 of the side, random
  # crop back: small images) or 'inception_crop' (random-resized crop: large or variable-size
  # images). Datasets other than the built-in ones get 'pad_crop' for fixed-size images of at
  # most 64 pixels a side, else 'inception_crop'; image folders 'pad_crop' if image_size <= 64.
  config.augmentation = ''
  # False turns off the random mirroring of training images (the digits are never mirrored).
  config.flip = True
  # RandAugment (Cubuk et al. 2020) as torchvision's `RandAugment`: this many operations per
  # training image, each drawn from its 14 (identity, shears, translations, rotation, brightness,
  # colour, contrast, sharpness, posterize, solarize, autocontrast, equalize) and applied at bin
  # `randaugment_magnitude` of 0-30 (torchvision's defaults: 2 and 9), its sign drawn. 0: off.
  config.randaugment_layers = 0
  config.randaugment_magnitude = 9
  # TrivialAugmentWide (Muller & Hutter 2021) as torchvision's: one of the same 14 operations per
  # image at a random bin of its wider ranges (torchvision's ResNet-50 V2 recipe). Excludes
  # RandAugment.
  config.trivial_augment = False
  # Random erasing (Zhong et al. 2020) as torchvision's `RandomErasing`: with this probability a
  # rectangle of 2-33% of the image, aspect ratio 0.3-3.3, is set to the mean colour (0 after
  # normalisation). Applied after the crop, flip and the policy above. 0: off.
  config.random_erasing = 0.0
  # Mixup (Zhang et al. 2018) and CutMix (Yun et al. 2019) of each training batch on the device,
  # one ratio per batch drawn from Beta(alpha, alpha), each image mixed with the image at the
  # mirrored position and the targets in the same proportion (top-1 is still counted against
  # the image's own label). 0: off. With both on, a batch is CutMix with probability
  # `mixup_switch_prob`, else mixup (timm's Mixup).
  config.mixup_alpha = 0.0
  config.cutmix_alpha = 0.0
  config.mixup_switch_prob = 0.5
  # Global batch size (summed over all devices and hosts), images per step.
  config.batch_size = 128
  # Gradient accumulation: each optimizer step averages the gradients of this many micro-batches
  # of batch_size / grad_accum_steps images, run one after another on the same devices, so that
  # a recipe's global batch fits on fewer of them. Step counts, the learning-rate schedule and
  # checkpoints count optimizer steps. BatchNorm normalises each micro-batch by its own
  # statistics and updates its running statistics once per micro-batch. 1: off.
  config.grad_accum_steps = 1
  # Images per BatchNorm statistics group in training: each run of this many consecutive images
  # of a device's share of the batch is normalised by its own statistics, as data-parallel
  # training without synchronised BatchNorm does on each GPU (He 2015's CIFAR runs: 128 images
  # on two GPUs, 64 each). Must divide batch_size / number of devices. The running statistics
  # average the groups'. 0: statistics over the global batch.
  config.bn_group_size = 0
  # Global evaluation batch size; the last batch is padded and masked, never dropped.
  config.eval_batch_size = 500
  # 'fake' data only: batches per evaluation pass (a throughput run needs little evaluation).
  config.fake_eval_batches = 1

  # --- Evaluation protocol -------------------------------------------------------------------
  # 'center': one centre crop. '10crop': softmax averaged over the 4 corner crops and the centre
  # crop, and their mirror images (He 2015, Table 3). 'multiscale': softmax averaged over the
  # image at each of `eval_sizes`, the network applied fully convolutionally (He 2015, Table 4).
  config.eval_protocol = 'center'
  # Side of the crops classified by 'center' and '10crop', pixels; 0: `image_size`. A network
  # trained at 224 can be tested at 320: He 2016, Table 5, "a single 320x320 crop from s = 320",
  # is eval_image_size=320 with eval_crop_fraction=1.0 (with 0.875 the shorter side is 366).
  config.eval_image_size = 0
  # Share of the resized image's shorter side that the crop side spans: the shorter side is
  # resized to eval_image_size / eval_crop_fraction (ImageNet: 0.875, 224 of 256). CIFAR keeps
  # 1.0, its own 32 pixels; '10crop' on CIFAR needs a smaller crop, e.g. 28 with 0.875.
  config.eval_crop_fraction = 1.0
  # Shorter side of the resized image before the centre crop, pixels; 0: eval_image_size /
  # eval_crop_fraction, rounded. For a recipe that names the resize and trains at another size:
  # torchvision's ResNet-50 V2 weights train at 176 and test a 224 crop of 232 (image_size=176,
  # eval_image_size=224, eval_resize_size=232).
  config.eval_resize_size = 0
  # 'multiscale': shorter sides, pixels, e.g. (224, 256, 384, 480, 640) as in He 2015.
  config.eval_sizes = ()
  # 'multiscale': 1.0 classifies the central square at each size. Above 1, the whole image, as
  # He 2015's fully convolutional test: a longer side of up to eval_max_aspect times the shorter
  # one (longer ones centre-cropped to it), on a zero canvas of that side whose padding is kept
  # out of every layer and of the average pool (`evaluation.whole_image_logits`). 4/3 keeps
  # 4:3 and 3:4 images (ImageNet's usual 500x375) whole, 2.0 also 2:1 ones; the canvas is a
  # square of eval_max_aspect x the size, (4/3)^2 or 4 times the pixels of the central square.
  config.eval_max_aspect = 1.0
  # More test sets, evaluated once at the end of training with the final weights and written to
  # summary.json under 'extra_eval': TFDS 'name:split' pairs, e.g. ('imagenet_v2:test',
  # 'imagenet2012_real:validation', 'imagenet_a:test', 'imagenet_r:test',
  # 'imagenet_sketch:test') for ImageNet or ('cifar10_1/v6:test',) for CIFAR-10. ReaL counts any of
  # an image's labels; ImageNet-A and -R restrict the logits to their 200 classes
  # (resnet_jax/extra_eval.py).
  config.extra_eval = ()
  # Shuffle buffer, examples per host.
  config.shuffle_buffer_size = 16_384
  # Keep the decoded dataset in host memory after the first epoch (small datasets only).
  config.cache = True
  # Batches prepared ahead of the device.
  config.prefetch = 2

  # --- Length ------------------------------------------------------------------------------
  # Training length in optimizer steps. If <= 0, `num_epochs` passes over the training split.
  config.num_train_steps = 64_000
  config.num_epochs = 0.0

  # --- Optimisation --------------------------------------------------------------------------
  # 'sgd' (momentum SGD as in PyTorch, all three papers' optimizer), 'lars' (optax.lars, You et
  # al. 2017, for batches of 8k and more), 'adamw' (optax.adamw) or 'lamb' (optax.lamb, You et
  # al. 2019, with a trust ratio per layer as 'lars'; "ResNet strikes back" A2/A3).
  config.optimizer = 'sgd'
  # Momentum of 'sgd' and 'lars', and Nesterov's form.
  config.momentum = 0.9
  config.nesterov = False
  # LARS: trust ratio = coefficient * |w| / (|g + weight_decay * w| + eps), per layer (per block
  # inside stacked runs of blocks).
  config.lars_trust_coefficient = 0.001
  config.lars_eps = 0.0
  # AdamW and LAMB: decay rates of the first and second moment estimates.
  config.adam_b1 = 0.9
  config.adam_b2 = 0.999
  # Peak learning rate. If `lr_base_batch_size` > 0 it is scaled linearly:
  # learning_rate * batch_size / lr_base_batch_size (0.1 per 256 images on ImageNet).
  config.learning_rate = 0.1
  config.lr_base_batch_size = 0  # 0: no scaling.
  # 'step' (multiply by `lr_decay_factor` at each of `lr_decay_at`), 'cosine' (to `lr_end` at
  # the last step), 'constant', or 'polynomial' (from the peak to `lr_end` with exponent
  # `lr_decay_power`, the MLPerf LARS schedule).
  config.schedule = 'step'
  # Unit of `lr_decay_at` and `warmup`: 'steps' or 'epochs' (whole batches per pass).
  config.schedule_unit = 'steps'
  # Decay points of the 'step' schedule, in `schedule_unit`, and the factor applied at each.
  config.lr_decay_at = (32_000, 48_000)
  config.lr_decay_factor = 0.1
  # Final learning rate of 'cosine' and 'polynomial', and the exponent of 'polynomial'.
  config.lr_end = 0.0
  config.lr_decay_power = 2.0
  # Linear warmup from 0 to the peak learning rate, in `schedule_unit`.
  config.warmup = 0.0
  # Constant warm-up: the first `warmup_constant_steps` optimizer steps run at
  # `warmup_constant_lr` (not batch-scaled), then the schedule continues. He et al. 2015 train
  # CIFAR ResNet-110 (and 1202, "trained as described above") at 0.01 until the training error
  # is below 80%, about 400 iterations; He et al. 2016 do so for all their CIFAR runs. 0: off.
  config.warmup_constant_steps = 0
  config.warmup_constant_lr = 0.01
  # Weight decay. 'sgd' and 'lars' add weight_decay * w to the gradient (PyTorch SGD's
  # weight_decay, the papers' recipe); 'adamw' and 'lamb' decouple it from the gradient.
  config.weight_decay = 1e-4
  # Whether weight decay also applies to BatchNorm scales and biases and to layer biases, as
  # in the papers. False leaves them out, and with 'lars' and 'lamb' also out of the trust
  # ratio (Goyal et al. 2017, the MLPerf LARS recipe).
  config.weight_decay_bn_and_bias = True
  # Label smoothing of the training loss (0: none, as in the papers).
  config.label_smoothing = 0.0
  # Training loss: 'softmax_xent' (softmax cross-entropy, the papers') or 'sigmoid_xent' (binary
  # cross-entropy of each class's sigmoid against the one-hot, smoothed or mixed targets, averaged
  # over classes and images: timm's BinaryCrossEntropy as "ResNet strikes back" trains).
  config.loss = 'softmax_xent'
  # Exponential moving average of the weights (parameters and BatchNorm statistics), evaluated
  # beside them at every evaluation (metrics `ema_eval_*`, `ema_eval` in summary.json): from a
  # copy of the initial weights, every `ema_every_steps` optimizer steps
  # ema = ema_decay * ema + (1 - ema_decay) * weights. 0: off.
  config.ema_decay = 0.0
  config.ema_every_steps = 1

  # --- Bookkeeping ---------------------------------------------------------------------------
  # Name of the recipe a config file sets (e.g. 'torchvision_v2'), recorded with the run; a
  # report of a sweep over recipes shows it in place of the fields it sets.
  config.recipe = ''
  # Seed of parameter initialisation, data order, augmentation and dropout.
  config.seed = 0
  # Train metrics (loss, top-1, learning rate, images/s, input wait) every N steps.
  config.log_every_steps = 100
  # Evaluate every N steps (0: only at the end).
  config.eval_every_steps = 0
  # Save a checkpoint every N steps (and at the end, and on SIGTERM).
  config.checkpoint_every_steps = 1_000
  # Checkpoints kept in the workdir (the newest ones).
  config.keep_checkpoints = 3
  return config
