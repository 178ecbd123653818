package slamio

// DecodePicture exposes decodePicture to the fuzzer.
var DecodePicture = decodePicture
