"""Neural building blocks (SpeechBrain lobes) of speechbrain-skill."""
