print("cox")
