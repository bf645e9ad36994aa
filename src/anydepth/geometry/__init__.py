"""Pure tensor geometry: rotations, rigid transforms, cameras, DA3 pose encodings, ray-based pose, depth scale."""

from anydepth.geometry.cameras import (
    affine_inverse,
    as_homogeneous,
    from_homogeneous,
    make_intrinsics,
    pixel_grid,
    project_points,
    to_homogeneous,
    transform_points,
    unproject_depth,
)
from anydepth.geometry.depth_alignment import (
    MetricAlignment,
    align_to_metric,
    alignment_mask,
    apply_metric_scaling,
    fill_sky,
    fill_sky_with_far_depth,
    least_squares_scale,
    non_sky_mask,
    quantile,
    sample_for_quantile,
)
from anydepth.geometry.pose_encoding import (
    POSE_ENCODING_DIM,
    camera_to_pose_encoding,
    extrinsics_to_pose_encoding,
    pose_encoding_to_camera,
    pose_encoding_to_extrinsics,
)
from anydepth.geometry.ray_pose import camera_from_rays, ray_grid, solve_ray_camera
from anydepth.geometry.rotations import (
    quaternion_to_rotation_matrix,
    rotation_matrix_to_quaternion,
    standardize_quaternion,
)

__all__ = [
    "POSE_ENCODING_DIM",
    "MetricAlignment",
    "affine_inverse",
    "align_to_metric",
    "alignment_mask",
    "apply_metric_scaling",
    "as_homogeneous",
    "camera_from_rays",
    "camera_to_pose_encoding",
    "extrinsics_to_pose_encoding",
    "fill_sky",
    "fill_sky_with_far_depth",
    "from_homogeneous",
    "least_squares_scale",
    "make_intrinsics",
    "non_sky_mask",
    "pixel_grid",
    "pose_encoding_to_camera",
    "pose_encoding_to_extrinsics",
    "project_points",
    "quantile",
    "quaternion_to_rotation_matrix",
    "ray_grid",
    "rotation_matrix_to_quaternion",
    "sample_for_quantile",
    "solve_ray_camera",
    "standardize_quaternion",
    "to_homogeneous",
    "transform_points",
    "unproject_depth",
]
