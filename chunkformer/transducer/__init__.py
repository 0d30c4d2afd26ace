"""Transducer (RNN-T) ChunkFormer: LSTM predictor, joint network, searches and loss
(``spec/rnnt.md``); :class:`~chunkformer.transducer.model.TransducerModel` ties them to the
encoder, CTC head and attention decoder that released transducer folders carry."""
