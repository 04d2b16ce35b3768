"""Tiny real Coqui artefacts for tests: a VITS small enough to train on a CPU in seconds, and enrolled clips.

The VITS reads characters (no espeak-ng phonemiser), runs at 16 kHz and has
hidden size 32, one layer per block, a small three-stage decoder and only the
scale discriminator: about 1.4 M generator parameters. Untrained it speaks
noise, which is all an engine or trainer test needs: shapes, lengths, sample
rates, checksums and resumption.
Its speech clips come from the packaged Piper voice, so the data pipeline
runs on real speech.

Building costs seconds, so each helper caches per test session (keyed on
pytest's base temp folder) and test modules share one base model.
"""

from __future__ import annotations

import functools
import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

TINY_SAMPLE_RATE = 16_000

TRAINING_TEXTS = (
    "The meeting starts at nine in the morning.",
    "Please bring the signed consent form with you.",
    "We thank everyone who stood with us in the rain.",
    "The court will hear the case in public next week.",
    "Every message carries a label and a watermark.",
    "My friends will read my words until I can.",
)


@dataclass(frozen=True)
class EnrolledRecording:
    """Shaped like `pipeline.services.enrollment.Recording`: a wav, its sha256 and its transcript."""

    path: Path
    sha256: str
    transcript: str


def tiny_vits_config() -> object:
    """A characters-only VitsConfig a CPU trains at well under a second a step."""
    from TTS.config.shared_configs import BaseAudioConfig
    from TTS.tts.configs.shared_configs import CharactersConfig
    from TTS.tts.configs.vits_config import VitsArgs, VitsConfig

    args = VitsArgs(
        hidden_channels=32, hidden_channels_ffn_text_encoder=64, num_heads_text_encoder=1, num_layers_text_encoder=1,
        num_layers_posterior_encoder=1, num_layers_flow=1, spec_segment_size=16, out_channels=257,
        upsample_initial_channel_decoder=32, upsample_rates_decoder=[8, 8, 4], upsample_kernel_sizes_decoder=[16, 16, 8],
        resblock_kernel_sizes_decoder=[3], resblock_dilation_sizes_decoder=[[1, 1, 1]],  # three dilations each
        periods_multi_period_discriminator=[], init_discriminator=False,  # scale discriminator only
    )
    audio = BaseAudioConfig(sample_rate=TINY_SAMPLE_RATE, fft_size=512, win_length=512, hop_length=256, num_mels=40,
                            mel_fmin=0, mel_fmax=None)
    characters = CharactersConfig(
        characters_class="TTS.tts.models.vits.VitsCharacters", pad="_", eos="", bos="", blank="",
        characters="abcdefghijklmnopqrstuvwxyz ", punctuations=".,!?'-", phonemes="", is_unique=True, is_sorted=True,
    )
    return VitsConfig(model_args=args, audio=audio, characters=characters, use_phonemes=False,
                      text_cleaner="basic_cleaners", add_blank=False, print_step=1)


URDU_LETTERS = "ءآأؤئابپتٹثجچحخدڈذرڑزژسشصضطظعغفقکگلمنںوہھۂۃیےۓ"
"""The Urdu alphabet as Urdu is written (Unicode's Urdu letter forms: ک not ك, ی not ي, ہ not ه), with hamza forms."""

URDU_MARKS = "\u064b\u064c\u064d\u064e\u064f\u0650\u0651\u0652\u0654\u0670"
"""Diacritics a careful writer adds: tanwin, zabar, pesh, zer, shadd, jazm, hamza above, khari zabar."""

URDU_PUNCTUATION = "۔،؟؛!.,:'-"


def tiny_urdu_vits_config() -> object:
    """The tiny VITS reading Urdu letters: its character set is the Urdu alphabet, marks and punctuation."""
    config = tiny_vits_config()
    config.characters.characters = URDU_LETTERS + URDU_MARKS + " "
    config.characters.punctuations = URDU_PUNCTUATION
    return config


@functools.cache
def tiny_vits(folder: Path, script: str = "latin") -> tuple[Path, Path]:
    """A randomly initialised tiny VITS saved as (model.pth, config.json) in `folder`, once per folder.

    `script` "latin" reads a-z (the English base), "urdu" the Urdu alphabet (`tiny_urdu_vits_config`).
    """
    import torch
    from TTS.tts.models.vits import Vits

    from pipeline.train.checkpoint import slim_vits

    folder.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(0)
    config = {"latin": tiny_vits_config, "urdu": tiny_urdu_vits_config}[script]()
    model = Vits(config)
    path = slim_vits(model.state_dict(), config.to_dict(), folder, step=0, epoch=0,
                     voxgate={"fixture": f"tiny-vits-{script}"})
    return path, folder / "config.json"


@functools.cache
def piper_clips(folder: Path, onnx: Path) -> tuple[EnrolledRecording, ...]:
    """One wav per line of TRAINING_TEXTS, spoken by the packaged Piper voice, with sha256 and transcript."""
    import soundfile
    from piper import PiperVoice

    folder.mkdir(parents=True, exist_ok=True)
    voice = PiperVoice.load(str(onnx))
    recordings = []
    for number, text in enumerate(TRAINING_TEXTS):
        chunks = list(voice.synthesize(text))
        audio = np.concatenate([chunk.audio_float_array for chunk in chunks])
        path = folder / f"take-{number}.wav"
        soundfile.write(path, audio, chunks[0].sample_rate, subtype="PCM_16")
        recordings.append(EnrolledRecording(path, hashlib.sha256(path.read_bytes()).hexdigest(), text))
    return tuple(recordings)


def engine_clips(folder: Path, model: Path, config: Path) -> tuple[EnrolledRecording, ...]:
    """TRAINING_TEXTS spoken by the tiny VITS itself: clips for GPU runs, where Piper's voice is not carried."""
    import soundfile

    from pipeline.synth import CoquiEngine

    folder.mkdir(parents=True, exist_ok=True)
    engine = CoquiEngine(model, config, device="cpu", length_scale=8.0)  # about speaking length; see the engine tests
    engine.load()
    recordings = []
    for number, (text, audio) in enumerate(zip(TRAINING_TEXTS, engine.synthesize(TRAINING_TEXTS), strict=True)):
        path = folder / f"take-{number}.wav"
        soundfile.write(path, audio, engine.sample_rate, subtype="PCM_16")
        recordings.append(EnrolledRecording(path, hashlib.sha256(path.read_bytes()).hexdigest(), text))
    return tuple(recordings)


@functools.cache
def tiny_xtts(folder: Path) -> Path:
    """A randomly initialised XTTS folder laid out like coqui/XTTS-v2, small enough for a CPU; returns the folder.

    model.pth, config.json and vocab.json (a BPE over the training texts with
    XTTS's special tokens), dvae.pth and mel_stats.pth. The GPT is one layer
    64 wide and stops after 64 audio tokens (2.9 s, longer than any training clip); the HiFi-GAN decoder and the
    DVAE keep XTTS's fixed sizes. Random weights never emit the stop token,
    so every sentence runs to that cap: about 3 s of noise.
    """
    import torch
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers
    from TTS.tts.configs.xtts_config import XttsConfig
    from TTS.tts.layers.xtts.dvae import DiscreteVAE
    from TTS.tts.layers.xtts.tokenizer import VoiceBpeTokenizer, multilingual_cleaners
    from TTS.tts.models.xtts import Xtts, XttsArgs

    folder.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(0)
    bpe = Tokenizer(models.BPE(unk_token="[UNK]"))
    bpe.pre_tokenizer = pre_tokenizers.Whitespace()
    # [STOP] and [UNK] must be ids 0 and 1: Coqui's XTTS dataset asserts neither appears in a text
    special = ["[STOP]", "[UNK]", "[SPACE]", "[START]", "[en]"]
    bpe.train_from_iterator([multilingual_cleaners(t, "en") for t in TRAINING_TEXTS],
                            trainers.BpeTrainer(vocab_size=120, special_tokens=special))
    vocab = folder / "vocab.json"
    bpe.save(str(vocab))
    args = XttsArgs(gpt_layers=1, gpt_n_model_channels=64, gpt_n_heads=2, decoder_input_dim=64,
                    gpt_num_audio_tokens=1026, gpt_start_audio_token=1024, gpt_stop_audio_token=1025,
                    gpt_use_perceiver_resampler=True, gpt_max_audio_tokens=64, tokenizer_file=str(vocab))
    config = XttsConfig(model_args=args, languages=["en"])
    model = Xtts(config)
    model.tokenizer = VoiceBpeTokenizer(vocab)
    model.init_models()
    torch.save({"model": model.state_dict(), "config": config.to_dict()}, folder / "model.pth")
    (folder / "config.json").write_text(config.to_json())
    dvae = DiscreteVAE(channels=80, normalization=None, positional_dims=1, num_tokens=1024, codebook_dim=512,
                       hidden_dim=512, num_resnet_blocks=3, kernel_size=3, num_layers=2, use_transposed_convs=False)
    torch.save(dvae.state_dict(), folder / "dvae.pth")
    torch.save(torch.ones(80), folder / "mel_stats.pth")
    return folder
