// The prompt pages' 3D viewers: gsplat.js on each run's Gaussians, from disk, without a server.
// assets/gsplat.js holds the library's ES module as text (window.GSPLAT_SOURCE) and each
// splats/<run>.js a base64 .ply (window.SPLATS[key]): a file:// page may load classic scripts
// but not fetch files or import modules from them, so the module is imported from a Blob URL.
(function () {
  "use strict";
  var lib = null;

  // gsplat.js starts its sorting workers from Blob URLs and falls back to data: URLs when that
  // throws. A page opened from disk has an opaque origin, so Chromium refuses a Blob worker, but
  // only later and asynchronously (no fallback): refuse it at once instead, so the library takes
  // its data: URL path, which works from disk.
  function workersFromDisk() {
    if (location.protocol !== "file:" || window.Worker.__fromDisk) return;
    var Native = window.Worker;
    var Patched = function (url, options) {
      if (String(url).indexOf("blob:") === 0) throw new Error("no Blob workers on file:// pages");
      return new Native(url, options);
    };
    Patched.prototype = Native.prototype;
    Patched.__fromDisk = true;
    window.Worker = Patched;
  }

  function library() {
    if (!lib) {
      workersFromDisk();
      var url = URL.createObjectURL(new Blob([window.GSPLAT_SOURCE], { type: "text/javascript" }));
      lib = import(url);
    }
    return lib;
  }

  function toBuffer(b64) {
    var bin = atob(b64), bytes = new Uint8Array(bin.length);
    for (var i = 0; i < bin.length; i++) bytes[i] = bin.charCodeAt(i);
    return bytes.buffer;
  }

  function start(el) {
    if (el.getAttribute("data-state")) return;
    var data = (window.SPLATS || {})[el.getAttribute("data-splat")];
    if (!data || !window.GSPLAT_SOURCE) {
      el.setAttribute("data-state", "error");
      el.querySelector(".viewer-note").textContent = "the Gaussians did not load";
      return;
    }
    el.setAttribute("data-state", "loading");
    library().then(function (SPLAT) {
      var canvas = el.querySelector("canvas");
      var renderer = new SPLAT.WebGLRenderer(canvas);
      var bg = (el.getAttribute("data-background") || "0,0,0").split(",").map(Number);
      renderer.backgroundColor = new SPLAT.Color32(bg[0], bg[1], bg[2], 255);  // the run's render background
      var scene = new SPLAT.Scene();
      var camera = new SPLAT.Camera();
      var radius = Number(el.getAttribute("data-radius")) || 3.5;
      var controls = new SPLAT.OrbitControls(camera, canvas, 0.6, 0.3, radius, false);
      // our .ply is z up (its header says so); gsplat's "polycam" format turns z-up scenes upright
      SPLAT.PLYLoader.LoadFromArrayBuffer(toBuffer(data), scene, "polycam");
      // gsplat's camera has a fixed focal length in pixels (a narrow view in a small canvas):
      // keep the vertical field of view at data-fov whatever the canvas size
      var fov = (Number(el.getAttribute("data-fov")) || 40) * Math.PI / 180, height = 0;
      function frame() {
        if (camera.data.height !== height && camera.data.height > 0) {
          height = camera.data.height;
          camera.data.fx = camera.data.fy = height / 2 / Math.tan(fov / 2);
        }
        controls.update();
        renderer.render(scene, camera);
        requestAnimationFrame(frame);
      }
      requestAnimationFrame(frame);
      el.setAttribute("data-state", "ready");
    }).catch(function (err) {
      el.setAttribute("data-state", "error");
      el.querySelector(".viewer-note").textContent = "3D viewer failed: " + err;
      console.error(err);
    });
  }

  document.addEventListener("DOMContentLoaded", function () {
    document.querySelectorAll(".viewer[data-splat]").forEach(function (el) {
      el.querySelector(".start").addEventListener("click", function () { start(el); });
      if (el.getAttribute("data-autostart") === "yes") start(el);
    });
  });
})();
