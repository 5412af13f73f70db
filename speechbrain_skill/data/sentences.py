"""Built-in English text for the synthetic corpus.

Sentences are composed from fixed word lists in a seeded order, so the corpus
has many distinct transcripts without shipping a text corpus.
"""

import itertools
import random

SUBJECTS = (
    "the old captain",
    "a young teacher",
    "my brother",
    "the quiet farmer",
    "her neighbour",
    "the tall soldier",
    "a tired traveller",
    "the clever student",
    "our doctor",
    "the little girl",
    "his mother",
    "the baker",
)
VERBS = (
    "carried",
    "painted",
    "found",
    "opened",
    "watched",
    "borrowed",
    "cleaned",
    "followed",
    "described",
    "remembered",
)
OBJECTS = (
    "a heavy wooden box",
    "the green door",
    "an old letter",
    "the broken window",
    "a silver spoon",
    "the narrow bridge",
    "a basket of apples",
    "the morning train",
    "a map of the river",
    "the empty garden",
)
ENDINGS = (
    "before the storm came",
    "in the early morning",
    "near the village church",
    "while the children slept",
    "after a long day",
    "under the bright moon",
    "with great care",
    "without a single word",
    "at the edge of the forest",
    "on a cold winter evening",
)

# The ten command words of the Speech Commands v1 12-class protocol.
KEYWORDS = ("yes", "no", "up", "down", "left", "right", "on", "off", "stop", "go")


def make_sentences(count, seed=0):
    """Return ``count`` distinct upper-case sentences in a seeded order.

    Arguments
    ---------
    count : int
        Number of sentences (at most the number of combinations, 12000).
    seed : int
        Seed of the order.

    Returns
    -------
    list of str

    Example
    -------
    >>> s = make_sentences(3, seed=1)
    >>> len(set(s)), s[0] == s[0].upper()
    (3, True)
    """
    combos = list(itertools.product(SUBJECTS, VERBS, OBJECTS, ENDINGS))
    if count > len(combos):
        raise ValueError(f"At most {len(combos)} distinct sentences, asked {count}.")
    rng = random.Random(seed)
    rng.shuffle(combos)
    return [" ".join(parts).upper() for parts in combos[:count]]
