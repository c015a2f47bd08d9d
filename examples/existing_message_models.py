from miniagents.ext.llm import UserMessage, SystemMessage, AssistantMessage

user_message = UserMessage(text="Hello!")
system_message = SystemMessage(text="System message")
assistant_message = AssistantMessage(text="Assistant message")

# The difference between these message types is in the default values of the `role` field of the message
print(user_message.role)
print(system_message.role)
print(assistant_message.role)
