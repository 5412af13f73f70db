"""Query-by-example analog in the QUESST 2014 layout.

Spoken documents are generator sentences; spoken queries are single nouns of
the generator's vocabulary, said by voices that do not speak the documents
(as in QUESST, queries and documents are separate recordings). A query
occurs in a document when its word is in the sentence. Development and
evaluation queries use different words::

    <output>/Audio/quesst14_<n>.wav
    <output>/dev_queries/quesst14_dev_<n>.wav, eval_queries/quesst14_eval_<n>.wav
    <output>/scoring/language_key_{utterances,dev,eval}.lst   (path language)
    <output>/scoring/groundtruth_quesst14_{dev,eval}/quesst14_{dev,eval}.rttm

It tells whether an upstream's frames match the same word across voices; it
cannot tell QUESST's difficulty (six languages, real recordings, inflected
and reordered matches).
"""

import random
from pathlib import Path

from speechbrain_skill.data.analogs.common import (
    analog_voices,
    mark_built,
    reusable,
    synthesize_jobs,
)
from speechbrain_skill.data.sentences import make_sentences

DEV_TERMS = ("captain", "teacher", "window", "letter", "garden", "bridge")
EVAL_TERMS = ("soldier", "farmer", "spoon", "apples", "forest", "river")
DOC_VOICES = 4
QUERY_VOICES = 2
LANGUAGE = "nnenglish"


def build_qbe_analog(output, seed=0, workers=2, num_documents=40):
    """Write the analog (skipped when one with the same settings exists).

    Arguments
    ---------
    output : str or os.PathLike
        Dataset root (``--data_folder`` of the QbE recipe).
    seed : int
        Same seed, same dataset.
    workers : int
        Parallel TTS processes.
    num_documents : int
        Spoken sentences searched.

    Returns
    -------
    pathlib.Path
    """
    output = Path(output)
    settings = dict(seed=seed, documents=num_documents, dev=DEV_TERMS, eval=EVAL_TERMS)
    if reusable(output, settings):
        return output
    voices = analog_voices(DOC_VOICES + QUERY_VOICES, seed)
    terms = set(DEV_TERMS + EVAL_TERMS)
    # Sentences with a term first, so that every query occurs somewhere.
    pool = [s.lower() for s in make_sentences(3000, seed)]
    with_term = [s for s in pool if terms & set(s.split())]
    without = [s for s in pool if not terms & set(s.split())]
    rng = random.Random(seed)
    chosen = with_term[: (3 * num_documents) // 4] + without[: num_documents // 4]
    rng.shuffle(chosen)
    jobs, lists = [], {"utterances": [], "dev": [], "eval": []}
    documents = []
    for index, sentence in enumerate(chosen):
        name = f"quesst14_{index + 1:05d}"
        voice = voices[index % DOC_VOICES]
        jobs.append((output / "Audio" / f"{name}.wav", sentence, voice, name))
        lists["utterances"].append(f"quesst14Database/Audio/{name}.wav {LANGUAGE}")
        documents.append((name, set(sentence.split())))
    truth = {"dev": [], "eval": []}
    for split, words in (("dev", DEV_TERMS), ("eval", EVAL_TERMS)):
        for index, word in enumerate(words):
            name = f"quesst14_{split}_{index + 1:04d}"
            voice = voices[DOC_VOICES + index % QUERY_VOICES]
            folder = f"{split}_queries"
            jobs.append((output / folder / f"{name}.wav", word, voice, name))
            lists[split].append(f"quesst14Database/{folder}/{name}.wav {LANGUAGE}")
            truth[split] += [
                f"LEXEME {doc} 1 0.000 0.000 {name} lex <NA> <NA>"
                for doc, doc_words in documents
                if word in doc_words
            ]
    seconds = synthesize_jobs(jobs, workers)
    scoring = output / "scoring"
    scoring.mkdir(parents=True, exist_ok=True)
    for name, lines in lists.items():
        (scoring / f"language_key_{name}.lst").write_text("\n".join(lines) + "\n")
    for split, lines in truth.items():
        folder = scoring / f"groundtruth_quesst14_{split}"
        folder.mkdir(exist_ok=True)
        (folder / f"quesst14_{split}.rttm").write_text("\n".join(lines) + "\n")
    mark_built(output, settings, utterances=len(jobs), seconds=round(seconds, 1))
    return output
