// Package layers builds the images of a version as the composition of its
// stages: it decides each part's layer (one decision, taken by the build
// and by its dry run: PlanBuild), materializes what must be packed
// (layers/materialize), assembles the app and models images
// (layers/assemble) and hands them to the outputs (layers/publish), as
// ko's build calls its publisher. It also reads base images and inspects
// images it made.
package layers
