"""Input and output: meshes, parameters, images, rendering."""
