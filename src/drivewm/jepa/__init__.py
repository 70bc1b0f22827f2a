"""JEPA world models: encoders, masks, predictors, collapse control, action conditioning, baselines, probes.

Importing this package registers the trainable models (kind "jepa"): jepa_bev, jepa_ac, lejepa, adl_jepa,
mae_bev, occupancy_mae, contrastive_bev, vjepa_camera (the camera-clip encoder behind `fd_vjepacam`).
"""

from drivewm.jepa import bev  # noqa: F401  (registers jepa_bev)
from drivewm.jepa import ac  # noqa: F401  (registers jepa_ac)
from drivewm.jepa import lejepa  # noqa: F401  (registers lejepa)
from drivewm.jepa import baselines  # noqa: F401  (registers occupancy_mae, mae_bev, contrastive_bev)
from drivewm.jepa import adl_jepa  # noqa: F401  (registers adl_jepa)
from drivewm.jepa import video_encoder  # noqa: F401  (registers vjepa_camera)
