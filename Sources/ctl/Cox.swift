import API
import ArgumentParser

/// `cox`: every Coxswain component and the user's CLI in one binary.
@main
struct Cox: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "cox",
        abstract: "Coxswain: a small, Kubernetes-shaped workload orchestrator.",
        version: CoxVersion.version,
        subcommands: [UpCommand.self, ServerCommand.self, ApplyCommand.self, DiffCommand.self, PatchCommand.self, LabelCommand.self, AnnotateCommand.self, EditCommand.self, GetCommand.self, DescribeCommand.self, DeleteCommand.self, LogsCommand.self, ExecCommand.self, AttachCommand.self, CopyCommand.self, PortForwardCommand.self, RolloutCommand.self, ScaleCommand.self, AgentCommand.self, RuntimeCommand.self, ControllersCommand.self, SchedulerCommand.self, ExplainCommand.self, ImageCommand.self, AuthCommand.self, TokenCommand.self, VersionCommand.self, ValidateCommand.self, StoreCommand.self, BenchCommand.self, DebugCommand.self]
    )
}
