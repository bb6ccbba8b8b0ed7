import API
import ArgumentParser

struct VersionCommand: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "version", abstract: "Print the version of cox.")

    func run() {
        print("cox \(CoxVersion.version) (Kubernetes API shape \(CoxVersion.kubernetesCompatibility))")
    }
}
