import Training

/// The model tensors of RUN's checkpoint of `step`, by name.
func checkpointParameters(_ runDir: String, step: Int) throws -> [String: [Float]] {
    let f = try SafeTensors.open(
        path: runDir + "/checkpoints/" + CheckpointManager.directoryName(step: step) + "/model.safetensors")
    var out: [String: [Float]] = [:]
    for name in f.entries.keys { out[name] = try f.array(name) }
    return out
}
