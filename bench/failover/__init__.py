"""The failover bench behind `bench/fulcrum-bench failover`."""
