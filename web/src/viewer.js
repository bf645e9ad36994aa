// The gallery's 3D viewer: shows a scene.glb (points + camera frusta) or a scene.ply (points) with orbit controls.
// Bundled by build.mjs into src/anydepth/gallery/static/viewer.js; the page gives the file in #viewer[data-src].
// When the first frame with the model is drawn it sets window.viewerReady and window.viewerPointCount (the
// browser tests wait on them); a failure sets window.viewerError.
import * as THREE from "three";
import { GLTFLoader } from "three/examples/jsm/loaders/GLTFLoader.js";
import { PLYLoader } from "three/examples/jsm/loaders/PLYLoader.js";
import { OrbitControls } from "three/examples/jsm/controls/OrbitControls.js";

const POINT_SIZE = 3; // pixels: sparse clouds of small scenes stay visible

function countPoints(object) {
  let count = 0;
  object.traverse((child) => {
    if (child.isPoints) count += child.geometry.getAttribute("position").count;
  });
  return count;
}

function pointMaterial(geometry) {
  return new THREE.PointsMaterial({
    size: POINT_SIZE,
    sizeAttenuation: false,
    vertexColors: geometry.hasAttribute("color"),
  });
}

// A PLY holds OpenCV world points (y down, z forward); glTF's frame is y up, z backward.
function plyObject(geometry) {
  const object = geometry.index ? new THREE.Mesh(geometry, new THREE.MeshNormalMaterial()) : null;
  const result = object || new THREE.Points(geometry, pointMaterial(geometry));
  result.scale.set(1, -1, -1);
  return result;
}

function load(kind, url) {
  return new Promise((resolve, reject) => {
    if (kind === "ply") {
      new PLYLoader().load(url, (geometry) => resolve(plyObject(geometry)), undefined, reject);
    } else {
      new GLTFLoader().load(
        url,
        (gltf) => {
          gltf.scene.traverse((child) => {
            if (child.isPoints) {
              child.material.size = POINT_SIZE;
              child.material.sizeAttenuation = false;
            }
          });
          resolve(gltf.scene);
        },
        undefined,
        reject,
      );
    }
  });
}

function fail(container, error) {
  const message = error && error.message ? error.message : String(error);
  window.viewerError = message;
  container.dataset.error = message;
  const note = document.createElement("p");
  note.className = "viewer-error";
  note.textContent = "3D view failed: " + message; // text, never HTML
  container.appendChild(note);
}

function start(container) {
  const renderer = new THREE.WebGLRenderer({ antialias: true, preserveDrawingBuffer: true });
  renderer.setPixelRatio(window.devicePixelRatio || 1);
  renderer.setSize(container.clientWidth, container.clientHeight);
  container.appendChild(renderer.domElement);

  const scene = new THREE.Scene();
  scene.background = new THREE.Color(0x202124);
  scene.add(new THREE.AmbientLight(0xffffff, 1.0));
  const camera = new THREE.PerspectiveCamera(50, container.clientWidth / container.clientHeight, 0.001, 1000);
  const controls = new OrbitControls(camera, renderer.domElement);
  const render = () => renderer.render(scene, camera);
  controls.addEventListener("change", render); // draw on demand: an idle page costs no CPU

  new ResizeObserver(() => {
    const width = container.clientWidth;
    const height = container.clientHeight;
    if (!width || !height) return;
    renderer.setSize(width, height);
    camera.aspect = width / height;
    camera.updateProjectionMatrix();
    render();
  }).observe(container);

  load(container.dataset.kind, container.dataset.src)
    .then((object) => {
      scene.add(object);
      // look from behind the first camera (glTF: cameras look down -z) at the whole scene
      const box = new THREE.Box3().setFromObject(object);
      const centre = box.getCenter(new THREE.Vector3());
      const radius = Math.max(box.getSize(new THREE.Vector3()).length() / 2, 1e-6);
      camera.near = radius / 1000;
      camera.far = radius * 100;
      camera.position.copy(centre).add(new THREE.Vector3(0, 0, radius * 2.2));
      camera.updateProjectionMatrix();
      controls.target.copy(centre);
      controls.update();
      render();
      const points = countPoints(object);
      container.dataset.points = String(points);
      container.dataset.ready = "true";
      window.viewerPointCount = points;
      window.viewerReady = true;
    })
    .catch((error) => fail(container, error));
}

function main() {
  const container = document.getElementById("viewer");
  if (!container || !container.dataset.src) return;
  try {
    start(container);
  } catch (error) {
    fail(container, error); // e.g. no WebGL in this browser
  }
}

if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", main);
else main();
