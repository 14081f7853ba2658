"""Voice profiles: a few seconds of a speaker's voice, once, so that a personalised model keeps that voice
and removes everything else, other voices included. :mod:`.encoder` (the speaker encoder and its shipped
weights), :mod:`.profile` (enrolment, the profile file, its checks)."""
