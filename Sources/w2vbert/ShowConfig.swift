import ArgumentParser
import W2VBert

/// `w2vbert config`: the resolved config, validated, as YAML.
struct ShowConfig: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "config",
        abstract: "Print the resolved config (preset, then YAML, then --set overrides) as YAML, validated.")
    @OptionGroup var configOptions: ConfigOptions
    @Flag(help: "List every key name instead.") var keys = false

    func run() throws {
        if keys {
            print(Config.keyNames.joined(separator: "\n"))
            return
        }
        let c = try configOptions.load()
        print(c.yaml, terminator: "")
        print("# \(ParameterLayout(config: c).parameterCount) parameters")
    }
}
