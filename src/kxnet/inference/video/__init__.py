"""Super-resolving videos: one blur kernel per shot, every frame non-blind, sound kept.

Why per shot
------------
Run blind on each frame, KXNet re-estimates the kernel every frame; noise, motion and the
changing content make that estimate wobble, and because the image step depends on the
kernel, the output then pulses in sharpness from frame to frame. The blur of a video is a
property of its camera, lens and processing chain, which change at cuts, not between frames.
So the clip is split into shots, each shot's kernel is estimated once from a few of its
frames, and every frame of the shot is run non-blind with that one estimate — exactly how
:class:`~kxnet.inference.upscaler.Upscaler` makes the tiles of one photo share a kernel.

Three decoding passes, each holding a few frames at most (plus a few numbers per frame):

1. **scan** (:func:`detect_shots`): every frame is shrunk by FFmpeg to a grey thumbnail of
   at most :data:`THUMB_SIDE` pixels; its mean absolute difference from the previous one
   (the smallest over shifts of up to one thumbnail pixel, so a pan is not a change of
   picture) scores a possible cut, its standard deviation says whether it has texture to
   estimate a kernel from. Then, per shot, ``kernel_frames`` frames are picked evenly.
2. **kernels** (:func:`estimate_shot_kernels`): the blind model runs on the centre crop (at
   most the upscaler's kernel crop, i.e. one tile) of each picked frame; the per-stage
   kernels K¹…K^T of a shot's frames are averaged stage by stage and renormalised.
3. **upscale** (:func:`upscale_video`): every frame is run with its shot's per-stage kernels
   and encoded at once, audio packets interleaved as they are read.

Shot cuts
---------
A cut is where frame i differs from frame i−1 far more than neighbouring frames differ from
each other: ``d[i] > max(min_cut, cut_ratio · median(d[i−w … i+w]))``. Grey thumbnails
rather than colour histograms, because a histogram ignores layout, so two shots of one set
from different angles (the commonest cut) look alike to it; a 64-pixel thumbnail averages
away grain and small motion but not a change of picture. The threshold is relative to the
local median so that pans and action scenes, where every frame differs a lot, do not cut
at every frame, while the ``min_cut`` floor stops still scenes, where the median is near
zero, from cutting on noise. A frame unlike both neighbours while they resemble each
other (a flash, a glitch) is not a cut, and cuts closer than :data:`MIN_SHOT` frames are
merged. Gradual transitions (fades, dissolves) are not detected; the kernel then switches
at the next hard cut. A shot's first and last frames are never picked for its kernel, and
flat frames (thumbnail deviation under :data:`MIN_DETAIL`, e.g. black) and flashes are
skipped when the shot has enough others.

Output
------
A constant-rate clip (also at rational rates such as 30000/1001, and also when its
container rounds times to milliseconds, as Matroska does) is written on its exact 1/rate
grid; a variable-rate one keeps each frame's pts in the source's time base. Either way the
frame times and the duration are kept. Every
audio stream is copied packet for packet when the output container takes its codec, else
re-encoded (AAC, or Opus for WebM). Default video: H.264 (VP9 for WebM), CRF 18, preset
medium, yuv420p, tagged with the source's colour matrix (an untagged source is taken as
BT.709 from 720 lines up, else BT.601, as players assume) and limited range. yuv420p needs
even sides; an odd output side (×3 of an odd input) loses its last row/column rather than
gaining a duplicated one. Rotation metadata and the pixel aspect ratio are carried over;
subtitles, chapters and data streams are not. The file is written next to ``dst`` under a
temporary name and renamed only when complete (:func:`kxnet.io.atomic_path`).

Under ``torchrun`` the shots of one video are shared by the processes and the pieces joined
(:func:`upscale_video_shared`).

PyAV ≥ 18 (``pip install 'kxnet[video]'``) is imported only when a video is actually read,
so :func:`is_video` works without it.
"""

from .shots import (CUT_RATIO, MIN_CUT, MIN_DETAIL, MIN_SHOT, THUMB_SIDE, VIDEO_EXTENSIONS, Shot, VideoScan,
                    detect_shots, is_video)
from .upscale import estimate_shot_kernels, upscale_video
from .shared import join_pieces, upscale_video_shared

__all__ = ["CUT_RATIO", "MIN_CUT", "MIN_DETAIL", "MIN_SHOT", "THUMB_SIDE", "VIDEO_EXTENSIONS", "Shot", "VideoScan",
           "detect_shots", "estimate_shot_kernels", "is_video", "join_pieces", "upscale_video", "upscale_video_shared"]
