"""The GPU decoding path (JPEGs read by workers, decoded and preprocessed as one batch on the
device) gives the same embeddings, skips and thumbnails as the Pillow path. No GPU here: the
batch runs on CPU tensors, with Pillow standing in for nvJPEG (``torchvision.io.decode_jpeg``)."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from imgcluster.embed import load_model
from imgcluster.embed.gpu_decode import GpuJpegDecoder, gpu_decoder_for, read_jpeg_header
from imgcluster.embed.runner import embed_records
from imgcluster.scan import scan
from imgcluster.store import Workspace

torch = pytest.importorskip("torch")


def pillow_decode(tensors: list) -> list:
    """nvJPEG's contract on the CPU: uint8 byte tensors → uint8 (3, H, W); raises on damaged data."""
    decoded = []
    for tensor in tensors:
        with Image.open(io.BytesIO(tensor.numpy().tobytes())) as image:
            decoded.append(torch.from_numpy(np.array(image.convert("RGB"))).permute(2, 0, 1).contiguous())
    return decoded


def photo(seed: int, size: tuple[int, int]) -> Image.Image:
    rng = np.random.default_rng(seed)
    small = (rng.random((30, 40, 3)) * 255).astype(np.uint8)  # some texture, as photos have
    return Image.fromarray(small).resize(size, Image.Resampling.BICUBIC)


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("gpu-decode")
    for i, size in enumerate([(320, 240), (240, 320), (500, 375), (224, 224), (640, 200)]):
        photo(i, size).save(root / f"photo-{i}.jpg", quality=90)
    photo(10, (300, 300)).convert("L").save(root / "grey.jpg", quality=90)
    photo(11, (300, 200)).save(root / "drawing.png")  # not a JPEG: Pillow's path
    rotated = photo(12, (320, 240))
    exif = rotated.getexif()
    exif[0x0112] = 6  # stored sideways: Pillow's path applies the rotation
    rotated.save(root / "rotated.jpg", quality=90, exif=exif)
    whole = io.BytesIO()
    photo(13, (320, 240)).save(whole, "JPEG", quality=90)
    (root / "truncated.jpg").write_bytes(whole.getvalue()[: len(whole.getvalue()) // 2])
    return root


def embedded(folder: Path, workspace: Path, decoder: GpuJpegDecoder | None):
    model = load_model("efficientnet-lite0", device="cpu")
    ws = Workspace.open(workspace)
    try:
        records = scan(folder, ws).images
        report = embed_records(records, model, ws, device_decoder=decoder)
        hashes = sorted(r.content_hash for r in records if r.content_hash not in report.undecodable)
        vectors = dict(zip(hashes, ws.load_embeddings(model.model_id, hashes)))
        return report, vectors, ws.thumbnail_hashes(hashes)
    finally:
        ws.close()


def test_device_decoding_matches_the_pillow_path(folder: Path, tmp_path: Path) -> None:
    model = load_model("efficientnet-lite0", device="cpu")
    decoder = GpuJpegDecoder(model.preprocess_spec, "cpu", decode=pillow_decode)
    on_device, device_vectors, device_thumbs = embedded(folder, tmp_path / "device", decoder)
    pillow, pillow_vectors, _ = embedded(folder, tmp_path / "pillow", None)

    assert device_vectors.keys() == pillow_vectors.keys() and len(device_vectors) == 8
    similarity = [float(device_vectors[h] @ pillow_vectors[h]) for h in device_vectors]
    assert min(similarity) > 0.98, similarity  # the same pictures (pixels checked below)
    assert set(on_device.undecodable.values()) == set(pillow.undecodable.values())
    assert len(on_device.undecodable) == 1 and "truncated" in next(iter(on_device.undecodable.values()))
    assert device_thumbs == set(device_vectors)  # thumbnails come from the device-decoded pictures


def test_device_preprocessing_matches_pillow_to_a_grey_level(folder: Path) -> None:
    from imgcluster.scan import load_rgb

    model = load_model("efficientnet-lite0", device="cpu")
    decoder = GpuJpegDecoder(model.preprocess_spec, "cpu", decode=pillow_decode)
    names = ["photo-0.jpg", "photo-1.jpg", "photo-2.jpg", "photo-4.jpg", "grey.jpg"]
    datas = [(folder / name).read_bytes() for name in names]
    pixels, _, refused = decoder([read_jpeg_header(d) for d in datas])
    assert refused == [] and tuple(pixels.shape) == (5, 3, 224, 224)
    std = np.asarray(model.preprocess_spec.std, dtype=np.float32).reshape(3, 1, 1)
    for on_device, data in zip(pixels.numpy(), datas):
        levels = np.abs(on_device - model.preprocess(load_rgb(data, min_side=224))) * std * 255
        assert levels.mean() < 0.5 and levels.max() < 2.5  # resampling rounds differently, no more


def test_only_upright_rgb_jpegs_go_to_the_device(folder: Path) -> None:
    header = read_jpeg_header((folder / "photo-2.jpg").read_bytes())
    assert header is not None and (header.width, header.height) == (500, 375)
    assert read_jpeg_header((folder / "grey.jpg").read_bytes()) is not None
    assert read_jpeg_header((folder / "drawing.png").read_bytes()) is None
    assert read_jpeg_header((folder / "rotated.jpg").read_bytes()) is None
    assert read_jpeg_header(b"not an image") is None
    assert read_jpeg_header((folder / "photo-2.jpg").read_bytes(), max_pixels=1000) is None


def test_no_device_decoding_on_cpu_or_without_torchvision() -> None:
    model = load_model("efficientnet-lite0", device="cpu")
    assert gpu_decoder_for(model) is None

    class OnCuda:
        device, preprocess_spec = "cuda", model.preprocess_spec

    # Here torchvision does not import with this torch, so even a CUDA model keeps Pillow.
    assert gpu_decoder_for(OnCuda()) is None
