// What the report's viewer (src/bodycapture/data/viewer/report.js) uses of three.js: tree-shaken to these names.
export {
  Scene, PerspectiveCamera, WebGLRenderer, Group, Mesh, LineSegments, Points, BufferGeometry, BufferAttribute,
  Float32BufferAttribute, MeshStandardMaterial, MeshBasicMaterial, LineBasicMaterial, PointsMaterial, Color,
  AmbientLight, HemisphereLight, DirectionalLight, Texture, PlaneGeometry, GridHelper, Vector3, Box3, Sphere,
  DoubleSide, SRGBColorSpace, REVISION,
} from 'three';
export { OrbitControls } from 'three/examples/jsm/controls/OrbitControls.js';
