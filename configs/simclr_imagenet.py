r"""SimCLR on ImageNet-1k: ResNet-50, 224 px host crops, LARS, batch 4096, 100 epochs.

Chen et al. 2020 (arXiv:2002.05709), the 100-epoch ImageNet setting (about 64%
linear top-1 in the paper): ResNet-50 with the ImageNet stem, batch 4096, LARS
lr 0.3 x B/256 = 4.8, weight decay 1e-6, 10 warm-up epochs then cosine decay,
temperature 0.1, the full augmentation (colour jitter strength 1.0, blur p=0.5),
a 2-layer 2048-128 projector. bfloat16 compute (parameters stay float32).

Input: TFDS "imagenet2012" through `data.tfds_pipeline.TFDSPipeline` with
`host_crop`: each host decodes only the two random-resized-crop boxes of each
JPEG (`decode_and_crop_jpeg`), resizes them to 224 and sends uint8 crops to its
devices, where flips, colour and blur happen. Each host reads its own
1/num_hosts shard of the training split. ImageNet does not fit in host memory,
so the in-memory evaluation stages (kNN, linear probe) are not run: `stages`
is pretraining only.

Prepare the data once (no download happens at training time): put
ILSVRC2012_img_train.tar and ILSVRC2012_img_val.tar in DIR/downloads/manual and
run `tfds build imagenet2012 --data_dir=DIR` on a machine with the archives,
then copy DIR to a GCS bucket in the TPU's region (TFDS reads gs:// directly).

On a Cloud TPU pod slice (e.g. v4-64: 8 hosts x 4 chips, 512 images per host
per step), start the same command on every host; `--distributed` lets JAX
detect the pod, and the workdir must be a directory every host sees:

    gcloud compute tpus tpu-vm ssh $TPU_NAME --zone=$ZONE --worker=all --command="
      cd ssl_jax && python -m ssl_jax.main --config configs/simclr_imagenet.py \
        --distributed --workdir /mnt/shared/simclr_imagenet \
        --config.input.data_dir=gs://$BUCKET/tensorflow_datasets"

On a single TPU VM (v4-8) or GPU host drop `--distributed`; the global batch
stays 4096 (`--config.input.batch_size` changes it, and the lr with it).

`:runlocal` is a short CPU smoke run of the same pipeline on the first 256
training images (tiny ResNet-50, 64 px crops); it still needs the prepared data.
"""

from ssl_jax.config import base_config, runlocal
from ssl_jax.data import augment
from ssl_jax.models import default_model_config


def get_config(arg: str | None = None):
    config = base_config(dataset="tfds", image_size=224, batch_size=4096)
    config.input.update(dict(
        tfds_name="imagenet2012", train_split="train", test_split="validation",
        host_crop=True, cache=False, shuffle_buffer=50_000))
    config.model = default_model_config("resnet50")
    config.model.update(dict(stem="imagenet", dtype="bfloat16"))
    config.method.view = augment.simclr_view(224, jitter_strength=1.0, blur_prob=0.5)
    config.method.temperature = 0.1
    config.method.projector.update(dict(hidden_dim=2048, out_dim=128, num_layers=2))
    config.optim.update(dict(name="lars", lr=0.3, lr_scaling="linear", weight_decay=1e-6))
    config.schedule.epochs = 100.0
    config.schedule.warmup_epochs = 10.0
    config.checkpoint.every_steps = 1000
    config.log.every_steps = 100
    config.stages = ("pretrain", )
    if arg == "runlocal":
        runlocal(config, train_limit=256)
        config.model.dtype = "float32"
        config.input.update(dict(image_size=64, shuffle_buffer=256))
        config.method.view.out_size = 64
        config.finetune.view.out_size = 64
    return config
