"""The training stages of EgoTwin (paper §3.3), one builder module each.

Stages, run in this order into one RUN_DIR (each finds the earlier ones' weights there):

=============  ===========================================================================
``video-vae``  tiny configs only: trains the small CogVideoX VAE (no downloaded weights);
               also builds the tiny tokenizer + T5 encoder -> ``RUN_DIR/encoders/``
               (`stages.tiny_encoders`)
(precompute)   `egotwin-model precompute`: text embeddings, video latents, motion features
``vae``        motion VAE, eq. 1 (reconstruction per loss group + lambda_KL KL) (`stages.motion_vae`)
``t2m``        text-to-motion: text + motion tokens only, text branch frozen, 10% null text
``joint``      text + video + motion (eq. 2), everything trained, 10% null text (`stages.t2m_joint`)
=============  ===========================================================================

A builder returns a `Stage` (`stages.base`: model, data, loss, finalize); `egotwin_model.train`
picks the builder (`build_stage`) and runs it.
"""
