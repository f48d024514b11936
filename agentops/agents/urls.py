from django.urls import path

from agentops.agents import views

app_name = "agents"

urlpatterns = [
    path("", views.index, name="index"),
    path("new", views.create, name="create"),
    path("<slug:slug>/", views.detail, name="detail"),
    path("<slug:slug>/draft", views.draft_start, name="draft_start"),
    path("<slug:slug>/draft/context", views.draft_context, name="draft_context"),
    path("<slug:slug>/versions/", views.versions, name="versions"),
    path("<slug:slug>/versions/<int:number>/", views.version_detail, name="version"),
    path("<slug:slug>/versions/<int:number>/publish", views.version_publish, name="publish"),
]
