// The report page (report.html): the photo with the overlay and keypoints, a 3D view of every fitted person
// in camera space, and each person's quality record and parameters. Its data is the JSON in #report-data,
// written by bodycapture/io/report.py; three.js is the global THREE (data/viewer/three.min.js, inlined before).
// Frames: the viewer frame of the meshes has y up and the camera at the origin looking along -z.
(function () {
  "use strict";
  const data = JSON.parse(document.getElementById("report-data").textContent);
  const COLOURS = ["#4e79a7", "#f28e2b", "#59a14f", "#e15759", "#76b7b2", "#edc948", "#b07aa1", "#ff9da7"];
  const colour = (k) => COLOURS[k % COLOURS.length];
  const W = data.info.width, H = data.info.height;
  const fx = data.camera.focal[0], fy = data.camera.focal[1];
  const cx = data.camera.center[0], cy = data.camera.center[1];
  const people = data.people;
  const animation = data.animation || null;  // a clip: tracks posed per frame (io/report.py animation_data)
  const tracks = animation ? animation.tracks : [];

  function decode(b64, Type) {
    const bin = atob(b64);
    const bytes = new Uint8Array(bin.length);
    for (let i = 0; i < bin.length; i++) bytes[i] = bin.charCodeAt(i);
    return new Type(bytes.buffer);
  }

  function element(tag, attrs, parent, text) {
    const svg = ["svg", "g", "line", "circle"].includes(tag);
    const el = svg ? document.createElementNS("http://www.w3.org/2000/svg", tag) : document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) el.setAttribute(k, v);
    if (text !== undefined) el.textContent = text;
    if (parent) parent.appendChild(el);
    return el;
  }

  const fmt = (v, digits) => (v === null || v === undefined ? "–" : Number(v).toFixed(digits));

  // ---- header ---------------------------------------------------------------------------------------------
  const facts = animation
    ? [`${tracks.length} ${tracks.length === 1 ? "track" : "tracks"}`, `${animation.frames} frames at ${fmt(animation.fps, 2)} fps`]
    : [`${people.length} ${people.length === 1 ? "person" : "people"}`];
  facts.push(`${W}×${H} px`, `focal ${fmt(fx, 0)} px${data.info.focal_source ? " (" + data.info.focal_source + ")" : ""}`);
  if (data.batch.seconds !== null && data.batch.seconds !== undefined) {
    facts.push(`fitted in ${fmt(data.batch.seconds, 1)} s` +
      (data.batch.people > people.length ? ` (a batch of ${data.batch.people} people)` : ""));
  }
  const doubtful = people.filter((p) => p.quality && p.quality.doubtful).length;
  if (doubtful) facts.push(`${doubtful} doubtful`);
  if (data.info.input) facts.push(data.info.input);
  document.getElementById("summary").textContent = facts.join(" · ");

  // ---- photo, overlay, keypoints -------------------------------------------------------------------------
  const photo = document.getElementById("photo"), overlay = document.getElementById("overlay");
  const showOverlay = document.getElementById("show-overlay");
  if (!data.photo && !data.overlay) {
    document.getElementById("photo-panel").hidden = true;
  } else if (data.photo) {
    photo.src = data.photo;
    if (data.overlay) overlay.src = data.overlay; else { overlay.remove(); showOverlay.disabled = true; }
  } else {  // no photo given: the overlay is drawn over grey
    photo.src = data.overlay || "";
    overlay.remove();
    showOverlay.disabled = true;
  }
  showOverlay.addEventListener("change", () => { overlay.style.visibility = showOverlay.checked ? "visible" : "hidden"; });

  const svg = document.getElementById("keypoints");
  svg.setAttribute("viewBox", `0 0 ${W} ${H}`);
  svg.setAttribute("preserveAspectRatio", "none");
  const stroke = Math.max(W, H) / 320;
  const layers = { detected: element("g", { id: "detected" }, svg), fitted: element("g", { id: "fitted" }, svg) };
  layers.fitted.style.display = "none";
  people.forEach((person, k) => {
    if (person.detected) drawSkeleton(person.detected, true, colour(k), layers.detected);
    drawSkeleton(person.fitted, false, "#ffffff", layers.fitted, colour(k));
  });

  function drawSkeleton(points, confident, lineColour, parent, dotColour) {
    const seen = (p) => !confident || p[2] > 0.05;
    const g = element("g", {}, parent);
    for (const [a, b] of data.skeleton) {
      const p = points[a], q = points[b];
      if (!seen(p) || !seen(q)) continue;
      element("line", { x1: p[0], y1: p[1], x2: q[0], y2: q[1], stroke: lineColour, "stroke-width": stroke,
        "stroke-opacity": confident ? Math.min(p[2], q[2]) * 0.6 + 0.4 : 0.9,
        "stroke-dasharray": confident ? "" : `${2 * stroke} ${stroke}` }, g);
    }
    points.forEach((p, i) => {
      if (!seen(p)) return;
      element("circle", { cx: p[0], cy: p[1], r: (i < 25 ? 1.6 : 0.8) * stroke, fill: dotColour || lineColour,
        "fill-opacity": confident ? p[2] * 0.6 + 0.4 : 1 }, g);
    });
  }

  for (const name of ["detected", "fitted"]) {
    const box = document.getElementById("show-" + name);
    const apply = () => { layers[name].style.display = box.checked ? "" : "none"; };
    box.addEventListener("change", apply);
    apply();
  }

  // ---- 3D view --------------------------------------------------------------------------------------------
  const canvas = document.getElementById("view3d");
  const meshes = [];
  let render = () => {};
  let clip3d = null;
  try {
    render = setUp3D();
  } catch (err) {
    const message = document.getElementById("view-message");
    message.hidden = false;
    message.textContent = "This browser cannot show the 3D view (" + err.message + "); the photo and tables still work.";
    document.body.dataset.rendered = "no-webgl";
  }

  function setUp3D() {
    const renderer = new THREE.WebGLRenderer({ canvas, antialias: true, preserveDrawingBuffer: true });
    renderer.setPixelRatio(Math.min(window.devicePixelRatio || 1, 2));
    const scene = new THREE.Scene();
    scene.background = new THREE.Color(0x20242c);
    const camera = new THREE.PerspectiveCamera(35, 4 / 3, 0.01, 1000);
    scene.add(camera);
    scene.add(new THREE.HemisphereLight(0xffffff, 0x30343c, 1.6));
    const light = new THREE.DirectionalLight(0xffffff, 1.8);  // a head lamp: follows the view
    light.position.set(0.3, 0.6, 0);
    light.target.position.set(0, 0, -1);
    camera.add(light, light.target);

    const FaceArray = data.face_type === "uint16" ? Uint16Array : Uint32Array;
    const index = new THREE.BufferAttribute(decode(data.faces, FaceArray), 1);
    const bounds = new THREE.Box3();
    function addMesh(positions, k) {
      const geometry = new THREE.BufferGeometry();
      geometry.setAttribute("position", new THREE.BufferAttribute(positions, 3));
      geometry.setIndex(index);
      geometry.computeVertexNormals();
      geometry.computeBoundingBox();
      bounds.union(geometry.boundingBox);
      const material = new THREE.MeshStandardMaterial({ color: colour(k), roughness: 0.75, metalness: 0.0,
        side: THREE.DoubleSide });
      const mesh = new THREE.Mesh(geometry, material);
      scene.add(mesh);
      meshes.push(mesh);
      return mesh;
    }
    people.forEach((person, k) => addMesh(decode(person.vertices, Float32Array), k));
    const clip = animation ? setUpAnimation(addMesh, bounds) : null;

    // The photo on its image plane behind the people, and the camera's frustum reaching it.
    const depth = Math.max(-bounds.min.z, 0.5) * 1.15;
    const pw = (W / fx) * depth, ph = (H / fy) * depth;
    const px = ((W / 2 - cx) / fx) * depth, py = -((H / 2 - cy) / fy) * depth;
    const planeMaterial = new THREE.MeshBasicMaterial({ color: 0x888888, side: THREE.DoubleSide, toneMapped: false });
    const plane = new THREE.Mesh(new THREE.PlaneGeometry(pw, ph), planeMaterial);
    plane.position.set(px, py, -depth);
    scene.add(plane);
    if (data.photo) {
      const img = new Image();
      const texture = new THREE.Texture(img);
      texture.colorSpace = THREE.SRGBColorSpace;
      img.onload = () => {
        texture.needsUpdate = true;
        planeMaterial.map = texture;
        planeMaterial.color.set(0xffffff);
        planeMaterial.needsUpdate = true;
        draw();
      };
      img.src = data.photo;
    }
    const corners = [[-1, -1], [1, -1], [1, 1], [-1, 1]].map(([sx, sy]) => [px + (sx * pw) / 2, py + (sy * ph) / 2, -depth]);
    const lines = [];
    for (let i = 0; i < 4; i++) lines.push(0, 0, 0, ...corners[i], ...corners[i], ...corners[(i + 1) % 4]);
    const frustumGeometry = new THREE.BufferGeometry();
    frustumGeometry.setAttribute("position", new THREE.Float32BufferAttribute(lines, 3));
    scene.add(new THREE.LineSegments(frustumGeometry, new THREE.LineBasicMaterial({ color: 0xd0d4dc })));

    const controls = new THREE.OrbitControls(camera, canvas);
    const sphere = bounds.getBoundingSphere(new THREE.Sphere());  // the people: side and top views frame them
    const degrees = (radians) => (radians * 180) / Math.PI;
    // The front view shows the whole photo: its vertical field of view, or wider when the canvas is narrower.
    const photoFov = () => degrees(2 * Math.atan(Math.max(H / 2 / fy, W / 2 / fx / camera.aspect)));

    const views = {
      // From the camera that took the photo, along its optical axis: the meshes lie over the photo.
      front: () => ({ fov: photoFov(), position: [0, 0, 0], target: [0, 0, sphere.center.z] }),
      // From the people's right (+x): depth runs across the screen, the camera off to the left.
      side: () => ({ fov: 35, position: [sphere.center.x + distance(35), sphere.center.y, sphere.center.z],
        target: sphere.center.toArray() }),
      // From above, slightly towards the camera so that depth runs up the screen.
      top: () => ({ fov: 35, position: [sphere.center.x, sphere.center.y + distance(35), sphere.center.z + 1e-3],
        target: sphere.center.toArray() }),
    };
    function distance(fov) { return (sphere.radius * 1.15) / Math.sin(((fov / 2) * Math.PI) / 180); }

    let current = "front";
    function setView(name) {
      current = name;
      resize();
      const view = views[name]();
      camera.fov = view.fov;
      camera.near = 0.01;
      camera.far = Math.max(100, sphere.radius * 20);
      camera.position.fromArray(view.position);
      controls.target.fromArray(view.target);
      delete document.body.dataset.moved;
      camera.updateProjectionMatrix();
      controls.update();
      document.querySelectorAll("button[data-view]").forEach((b) => b.classList.toggle("active", b.dataset.view === name));
      document.body.dataset.view = name;
      draw();
    }

    function resize() {
      const w = canvas.clientWidth, h = canvas.clientHeight;
      if (!w || !h) return;
      if (canvas.width === Math.round(w * renderer.getPixelRatio()) && camera.aspect === w / h) return;
      renderer.setSize(w, h, false);
      camera.aspect = w / h;
      if (current === "front" && !document.body.dataset.moved) camera.fov = photoFov();
      camera.updateProjectionMatrix();
    }

    let frames = 0;
    function draw() {
      resize();
      renderer.render(scene, camera);
      frames += 1;
      document.body.dataset.frames = String(frames);
      if (!document.body.dataset.rendered) {
        document.body.dataset.rendered = "yes";
        document.body.dataset.firstFrameMs = String(Math.round(performance.now()));
      }
    }

    controls.addEventListener("change", draw);
    controls.addEventListener("start", () => { document.body.dataset.moved = "yes"; });
    window.addEventListener("resize", draw);
    document.querySelectorAll("button[data-view]").forEach((b) => b.addEventListener("click", () => setView(b.dataset.view)));
    const showPlane = document.getElementById("show-plane");
    showPlane.addEventListener("change", () => { plane.visible = showPlane.checked; draw(); });
    if (clip) { clip.start(draw); clip3d = clip; }
    setView("front");
    return draw;
  }

  // ---- animation: linear blend skinning of each track's rest mesh, per frame ---------------------------------
  function setUpAnimation(addMesh, bounds) {
    const V = data.num_vertices, J = animation.num_joints, K = animation.influences;
    const skinJoints = decode(animation.skin_joints, Uint8Array);
    const packed = decode(animation.skin_weights, Uint16Array);
    const skinWeights = new Float32Array(packed.length);
    for (let i = 0; i < packed.length; i++) skinWeights[i] = packed[i] / 65535;
    const posed = tracks.map((track, k) => {
      const rest = decode(track.rest, Float32Array);
      const transforms = decode(track.transforms, Float32Array);  // (frames, J, 3, 4) row-major, viewer frame
      const positions = new Float32Array(V * 3);
      const state = { track, rest, transforms, positions, mesh: null };
      pose(state, track.first_frame);  // the views frame the first, middle and last frames
      state.mesh = addMesh(positions, k);
      for (const f of [track.first_frame + Math.floor(track.frames / 2), track.first_frame + track.frames - 1]) {
        pose(state, f);
        state.mesh.geometry.computeBoundingBox();
        bounds.union(state.mesh.geometry.boundingBox);
      }
      return state;
    });

    // v' = sum_k w_k (R_k v + t_k): blend the K 3x4 transforms of each vertex, then apply the blend.
    function pose(state, frame) {
      const f = frame - state.track.first_frame;
      if (f < 0 || f >= state.track.frames) return false;
      const A = state.transforms, base = f * J * 12, r = state.rest, out = state.positions;
      const m = new Float32Array(12);
      for (let v = 0; v < V; v++) {
        m.fill(0);
        for (let i = 0; i < K; i++) {
          const w = skinWeights[v * K + i];
          if (w === 0) continue;
          const a = base + skinJoints[v * K + i] * 12;
          for (let c = 0; c < 12; c++) m[c] += w * A[a + c];
        }
        const x = r[3 * v], y = r[3 * v + 1], z = r[3 * v + 2];
        out[3 * v] = m[0] * x + m[1] * y + m[2] * z + m[3];
        out[3 * v + 1] = m[4] * x + m[5] * y + m[6] * z + m[7];
        out[3 * v + 2] = m[8] * x + m[9] * y + m[10] * z + m[11];
      }
      return true;
    }

    const slider = document.getElementById("frame"), label = document.getElementById("frame-label");
    const play = document.getElementById("play");
    let current = 0, redraw = () => {}, playing = false, started = 0, startFrame = 0;

    function setFrame(frame) {
      current = Math.max(0, Math.min(animation.frames - 1, Math.round(frame)));
      for (const state of posed) {
        const shown = pose(state, current);
        state.mesh.visible = shown && state.wanted !== false;
        if (shown) {
          state.mesh.geometry.attributes.position.needsUpdate = true;
          state.mesh.geometry.computeVertexNormals();
        }
      }
      slider.value = String(current);
      label.textContent = `frame ${current + 1} / ${animation.frames} · ${fmt(current / animation.fps, 2)} s`;
      document.body.dataset.frame = String(current);
      redraw();
    }

    function tick(now) {
      if (!playing) return;
      const frame = startFrame + ((now - started) / 1000) * animation.fps;
      setFrame(frame % animation.frames);
      requestAnimationFrame(tick);
    }

    play.addEventListener("click", () => {
      playing = !playing;
      play.textContent = playing ? "pause" : "play";
      if (playing) { started = performance.now(); startFrame = current; requestAnimationFrame(tick); }
    });
    slider.addEventListener("input", () => setFrame(Number(slider.value)));
    return {
      posed,
      setFrame,
      start(draw) {
        redraw = draw;
        document.getElementById("timeline").hidden = false;
        slider.max = String(Math.max(animation.frames - 1, 0));
        window.bodycaptureReport = { setFrame, frame: () => current,
          positions: (k) => Array.from(posed[k].positions), visible: (k) => posed[k].mesh.visible };
        setFrame(0);
      },
    };
  }

  // ---- people: quality record, fit time, parameters ---------------------------------------------------------
  const list = document.getElementById("people");
  tracks.forEach((track, k) => {
    const card = element("article", { class: "person", id: `person-${k}` }, list);
    card.style.setProperty("--colour", colour(k));
    const title = element("h2", {}, card, `Track ${k}`);
    const state = clip3d && clip3d.posed[k];
    if (state) {
      const label = element("label", { style: "float:right;font-weight:normal" }, title);
      const box = element("input", { type: "checkbox", checked: "" }, label);
      label.append(" in 3D");
      box.addEventListener("change", () => { state.wanted = box.checked; clip3d.setFrame(Number(document.body.dataset.frame || 0)); });
    }
    const last = track.first_frame + track.frames - 1;
    element("p", {}, card, `frames ${track.first_frame + 1}–${last + 1} (${fmt(track.frames / animation.fps, 2)} s)`);
  });
  people.forEach((person, k) => {
    const q = person.quality || {};
    const card = element("article", { class: "person" + (q.doubtful ? " doubtful" : ""), id: `person-${k}` }, list);
    card.style.setProperty("--colour", colour(k));
    const title = element("h2", {}, card, `Person ${k}`);
    if (meshes[k]) {
      const label = element("label", { style: "float:right;font-weight:normal" }, title);
      const box = element("input", { type: "checkbox", checked: "" }, label);
      label.append(" in 3D");
      box.addEventListener("change", () => { meshes[k].visible = box.checked; render(); });
    }
    if (q.doubtful) element("p", { class: "warning" }, card, "Doubtful fit: " + q.reasons.join("; "));
    const table = element("table", { class: "quality" }, card);
    const row = (name, value, tip) => {
      const tr = element("tr", tip ? { title: tip } : {}, table);
      element("th", {}, tr, name);
      element("td", { class: "num" }, tr, value);
    };
    const res = q.residual_percent || {};
    for (const [group, value] of Object.entries(res)) {
      row(`keypoint residual, ${group}`, value === null ? "–" : `${fmt(value, 1)} % of its size`,
        "mean distance of the fitted keypoints to the confident detected ones, in % of the person's size");
    }
    if ("pose_prior" in q) row("pose prior energy", fmt(q.pose_prior, 1));
    if ("collisions" in q) row("colliding triangle pairs", q.collisions < 0 ? "not computed" : String(q.collisions));
    if ("rolled_back" in q) row("a stage rolled back", q.rolled_back ? "yes" : "no");
    row("final objective", person.loss === null ? "–" : Number(person.loss).toPrecision(4));
    if (person.start) row("start kept", person.start);
    row("fit time", `${fmt(person.fit_seconds, 2)} s`, "the batch's fitting time divided by the people fitted together in it");
    const details = element("details", {}, card);
    element("summary", {}, details, "parameters (SMPL-X names)");
    const params = element("table", { class: "params" }, details);
    for (const p of person.params) {
      const tr = element("tr", {}, params);
      element("td", {}, tr, p.name);
      element("td", {}, tr, p.values.map((v) => v.toFixed(4)).join(", "));
    }
  });
})();
