"""The data layer: corpora and manifests, noise, clean/noisy pairs, the seed feature cache, training
batches, synthetic voices and downloads.

- :mod:`.corpora`: find the utterances of a folder (AudioMNIST, FSDD, speech16k, any pattern).
- :mod:`.manifest`: one CSV row per utterance, its speaker-disjoint split and noise recipe.
- :mod:`.noise`: the only home of noise kinds, seeded generators, SNR scaling and noise folders.
- :mod:`.pairs`: the fixed evaluation pairs (:func:`.pairs.make_pair`), babble talkers, the clip cache.
- :mod:`.order`: the shuffled order of each epoch.
- :mod:`.batches`: on-the-fly noisy/clean waveform batches for training waveform models.
- :mod:`.synth`, :mod:`.download`: espeak-ng digits; verified atomic downloads.
"""
