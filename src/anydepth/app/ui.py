"""The Gradio interface of the web app: controls, the run button, depth images, the 3D scene and the zip."""

from __future__ import annotations

import logging
from typing import Any, List, Optional, Tuple

from anydepth.app.runner import DA3_FORMATS, AppSettings, RunOptions, model_choices, run_job
from anydepth.errors import AnyDepthError, require
from anydepth.web.models import ModelCache

logger = logging.getLogger(__name__)

DESCRIPTION = (
    "Upload images (views of one scene) or one video. DA3 models (`da3-*`) give depth, cameras and a 3D scene; "
    "Depth Anything V2 models (`dav2-*`) give per-image depth. Everything runs on this machine."
)


def _theme(gr: Any) -> Any:
    """Gradio's default look with the system's fonts: the page loads no web fonts from another site."""
    system = [gr.themes.Font("system-ui"), gr.themes.Font("sans-serif")]
    return gr.themes.Default(font=system, font_mono=[gr.themes.Font("ui-monospace"), gr.themes.Font("monospace")])


def create_app(settings: AppSettings, cache: Optional[ModelCache] = None) -> Any:
    """The app's ``gradio.Blocks``; ``launch`` serves it. ``cache`` keeps loaded models warm between runs."""
    gr = require("gradio", "app")
    cache = cache or ModelCache(max_models=2)

    def run(
        files: Optional[List[Any]],
        model: str,
        process_res: float,
        formats: List[str],
        conf: float,
        show_cameras: bool,
        fps: float,
    ) -> Tuple[List[Tuple[str, str]], Optional[str], Optional[str], str]:
        options = RunOptions(
            model=model,
            process_res=int(process_res),
            export_formats=tuple(formats or ()),
            conf_thresh_percentile=float(conf),
            show_cameras=bool(show_cameras),
            fps=float(fps),
        )
        try:
            result = run_job(settings, cache, files or [], options)
        except AnyDepthError as exc:  # one line for the user; nothing about the server's folders
            raise gr.Error(str(exc)) from None
        gallery = [(str(p), p.stem) for p in result.depth_images]
        return gallery, str(result.glb) if result.glb else None, str(result.zip), result.summary

    with gr.Blocks(title="anydepth", analytics_enabled=False) as blocks:
        gr.Markdown("# anydepth\n" + DESCRIPTION)
        with gr.Row():
            with gr.Column(scale=1):
                files = gr.File(
                    label=f"Images or a video (at most {settings.max_files} files)",
                    file_count="multiple",
                    file_types=["image", "video"],
                    elem_id="inputs",
                )
                model = gr.Dropdown(model_choices(settings.model), value=settings.model, label="Model")
                process_res = gr.Slider(56, 1022, value=504, step=14, label="Processing resolution")
                formats = gr.CheckboxGroup(
                    list(DA3_FORMATS), value=["glb", "depth_vis"], label="Exports (glb and depth_vis always)"
                )
                conf = gr.Slider(0, 99, value=40, step=1, label="Confidence cut (percentile) for points")
                show_cameras = gr.Checkbox(value=True, label="Show cameras in the 3D scene")
                fps = gr.Slider(0.1, 10, value=1, step=0.1, label="Video: frames per second sampled")
                button = gr.Button("Run", variant="primary", elem_id="run")
            with gr.Column(scale=2):
                summary = gr.Markdown(elem_id="summary")
                depth = gr.Gallery(label="Depth", columns=2, height="auto", elem_id="depth")
                scene = gr.Model3D(label="3D scene (scene.glb)", elem_id="scene")
                download = gr.File(label="All exports (zip)", elem_id="download")
        button.click(
            run,
            inputs=[files, model, process_res, formats, conf, show_cameras, fps],
            outputs=[depth, scene, download, summary],
            concurrency_limit=1,  # one model run at a time: they share the CPU / GPU
        )
    blocks.queue(max_size=16)
    return blocks


def launch(
    settings: AppSettings, host: str = "127.0.0.1", port: int = 7860, blocks: Optional[Any] = None, **kwargs: Any
) -> Any:
    """Serves the app (blocking unless ``prevent_thread_lock=True``); uploads are limited by the settings.

    Args:
        settings: what the app serves and accepts.
        host, port: where to listen (loopback by default).
        blocks: the app, when already built by :func:`create_app`.
        kwargs: more ``gradio.Blocks.launch`` options.
    """
    gr = require("gradio", "app")
    blocks = blocks or create_app(settings)
    return blocks.launch(
        server_name=host,
        server_port=port,
        max_file_size=settings.max_upload_bytes,
        share=False,
        allowed_paths=[str(settings.work_dir)],  # the run folders, which hold the results shown
        theme=_theme(gr),
        footer_links=[],
        **kwargs,
    )
