"""The gallery: a web server to browse exported scenes (`anydepth gallery`; `pip install 'anydepth[service]'`).

Contract:

- ``scenes.find_scenes(root)`` lists the scenes under the gallery folder: every folder (up to a few levels down)
  that holds a ``scene.glb``, a ``scene.ply`` or ``depth_vis/`` images, as the DA3 commands export them.
  Nothing that lies outside the root (after symlinks) and no hidden file is ever listed.
- ``server.create_gallery_app(root, token)`` builds the FastAPI application: HTML pages (index, one page per
  scene), a JSON listing, the scene files (only the types in ``scenes.CONTENT_TYPES``, confined to the root with
  ``web.security.confine``), and the 3D viewer bundle. Every error is JSON ``{"error": ...}``.
- ``pages`` renders the HTML; every name that comes from the file system is escaped. Pages load no external
  URL: the viewer is ``static/viewer.js``, three.js bundled by ``web/build.mjs`` (``make viewer``).
"""
