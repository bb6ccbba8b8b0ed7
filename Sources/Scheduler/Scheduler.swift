/// The scheduler: binds pending pods to nodes. Built in issue #6; only its namespace exists so far.
public enum SchedulerModule {
    public static let component = "scheduler"
}
